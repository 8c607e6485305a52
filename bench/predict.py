"""Predicting whole scenes: throughput, and peak memory on a small against a full Sentinel-2 tile.

``python -m sslrs_tf.predict`` (the real command line, one fresh process each) on two synthetic
scenes of N x N px at 10 m: S2 (13 bands, uint16, UTM) and S1 (VV, VH in dB) on EPSG:4326, so
that S1 goes through the on-the-fly warp. The model is a segmentation run trained briefly here
(configs/finetune_tiny.yaml as a segmenter: ResNet-10 encoders of S1 and S2 with their decoder),
predicting tiles of ``--tile`` px with a quarter-tile overlap. Each process's peak resident
memory (``ru_maxrss`` of that child) is reported; ``rss_ratio`` is the large scene's over the
small one's: memory that does not grow with the scene gives about 1.

    python bench/predict.py [--small 2000] [--large 10980] [--tile 256] [--figure docs/images/predict_map.png]

Prints one JSON line: megapixels/s and km2/s of each scene (whole command, start-up included), peaks.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.machine import describe  # noqa: E402
from bench.memory import peak_mb  # noqa: E402


def write_scene(folder, side):
    """S2 (UTM 33N, 10 m) and S1 (EPSG:4326, about 10 m) GeoTIFFs of `side` x `side` px, written in strips."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.warp import calculate_default_transform

    folder.mkdir(parents=True, exist_ok=True)
    s2_path, s1_path = folder / "s2.tif", folder / "s1.tif"
    if s2_path.exists() and s1_path.exists():
        return s2_path, s1_path
    transform = from_origin(500_000, 4_650_000, 10, 10)
    options = {"driver": "GTiff", "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate"}
    strip = 512
    cols = np.arange(side)
    with rasterio.open(s2_path, "w", width=side, height=side, count=13, dtype="uint16", crs="EPSG:32633",
                       transform=transform, **options) as dst:
        for top in range(0, side, strip):
            rows = np.arange(top, min(top + strip, side))[:, None]
            field = np.sin(rows / 37.0) * np.cos(cols[None] / 53.0)
            dst.write(np.stack([(4000 + 2500 * field * (1 + 0.05 * b)).astype(np.uint16) for b in range(13)]),
                      window=rasterio.windows.Window(0, top, side, len(rows)))
    bounds = rasterio.transform.array_bounds(side, side, transform)
    geo, w, h = calculate_default_transform("EPSG:32633", "EPSG:4326", side, side, *bounds)
    with rasterio.open(s1_path, "w", width=w, height=h, count=2, dtype="float32", crs="EPSG:4326", transform=geo,
                       **options) as dst:
        for top in range(0, h, strip):
            rows = np.arange(top, min(top + strip, h))[:, None]
            field = np.sin(rows / 41.0) * np.cos(np.arange(w)[None] / 47.0)
            dst.write(np.stack([-12 + 6 * field, -19 + 5 * field]).astype(np.float32),
                      window=rasterio.windows.Window(0, top, w, len(rows)))
    return s2_path, s1_path


def draw_figure(s2_path, map_path, out, size=600):
    """The docs' picture: the scene's S2 true colour beside its predicted map (its colour table), both read
    decimated to about `size` px, labelled SYNTHETIC."""
    import json

    import matplotlib

    matplotlib.use("Agg")
    import rasterio
    from matplotlib import patches, pyplot as plt

    with rasterio.open(s2_path) as src:
        step = max(1, src.width // size)
        shape = (src.height // step, src.width // step)
        rgb = np.moveaxis(src.read([4, 3, 2], out_shape=(3, *shape)), 0, -1).astype(np.float32)
    with rasterio.open(map_path) as src:
        codes = src.read(1, out_shape=shape)
        colours, names = src.colormap(1), json.loads(src.tags()["class_names"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6))
    axes[0].imshow(np.clip(rgb / 10000 / 0.6, 0, 1))
    axes[0].set_title("Sentinel-2 true colour (B04, B03, B02)")
    lut = np.array([colours.get(i, (255, 255, 255, 255))[:3] for i in range(256)], np.uint8)
    axes[1].imshow(lut[codes])
    axes[1].set_title("python -m sslrs_tf.predict")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.legend(handles=[patches.Patch(color=np.array(colours[i][:3]) / 255, label=n) for i, n in enumerate(names)],
               loc="lower center", ncol=len(names), fontsize=8, frameon=False)
    fig.suptitle("SYNTHETIC scene, briefly trained model: the format, not a result", color="red")
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    fig.savefig(out, dpi=80)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=10980)
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--work", default=None, help="folder for the scenes and the run (default: a temp folder)")
    parser.add_argument("--figure", default=None, help="also draw the small scene and its map into this PNG")
    args = parser.parse_args()
    from sslrs_tf.datasets import prepare_world

    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="bench_predict_"))
    world = {"patches": 64, "size": 64, "seed": 0, "dfc_validation": 32, "dfc_test": 8}
    prepare_world(work / "world" / "synthetic", work / "world" / "tfds", world)
    run = work / "run"
    if not (run / "export" / "card.json").exists():
        data = ["data.source=synthetic", f"data.synthetic.dir={work / 'world' / 'synthetic'}",
                f"data.data_dir={work / 'world' / 'tfds'}", *(f"data.synthetic.{k}={v}" for k, v in world.items())]
        config = ROOT / "configs" / "finetune_tiny.yaml"
        subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", str(config), f"run.dir={run}", *data,
                        "model.method=segmenter", "data.label=segmentation", "train.epochs=1",
                        "train.steps_per_epoch=2", "optimizer.encoder_lr=null"], cwd=ROOT, check=True,
                       capture_output=True)
    line = {"bench": "predict", "what": f"python -m sslrs_tf.predict, segmentation (ResNet-10 S1+S2, {args.tile} px "
                                        f"tiles, overlap {args.tile // 4}), S1 warped from EPSG:4326, whole command"}
    for side in (args.small, args.large):
        s2, s1 = write_scene(work / f"scene{side}", side)
        out = work / f"map{side}.tif"
        start = time.perf_counter()
        peak = peak_mb([sys.executable, "-m", "sslrs_tf.predict", "--run", str(run), "--s2", str(s2), "--s1", str(s1),
                        "--out", str(out), "--overwrite", "--tile", str(args.tile), "--batch-size",
                        str(args.batch_size)])
        seconds = time.perf_counter() - start
        megapixels = side * side / 1e6
        line[f"scene_{side}"] = {"megapixels": round(megapixels, 2), "seconds": round(seconds, 1),
                                 "megapixels_per_s": round(megapixels / seconds, 3),
                                 "km2_per_s": round(megapixels * 100 / seconds, 2), "peak_rss_mb": round(peak, 1)}
    line["rss_ratio"] = round(line[f"scene_{args.large}"]["peak_rss_mb"] / line[f"scene_{args.small}"]["peak_rss_mb"],
                              3)
    line["machine"] = describe()
    print(json.dumps(line), flush=True)
    if args.figure:
        draw_figure(work / f"scene{args.small}" / "s2.tif", work / f"map{args.small}.tif", args.figure)


if __name__ == "__main__":
    main()

"""Land-cover maps of whole scenes: tiles through a downstream model, written as a georeferenced GeoTIFF.

    python -m sslrs_tf.predict --run RUN --s2 S2.tif --s1 S1.tif --out landcover.tif

Segmentation models see overlapping tiles; each pixel's class probabilities are the average
of the tiles that cover it, weighted by a window that is highest at a tile's centre and falls
towards its edges (a squared sine, never quite 0), so tile borders leave no seams. The scene
is processed one row of tiles at a time and written as soon as no later tile touches it:
memory holds a row of tiles, not the scene. Classification models give one label per tile:
a coarser raster on the same CRS, one pixel per tile. The output is a tiled, DEFLATE-compressed
GeoTIFF in cloud-optimised layout (GDAL's COG driver, with overviews): uint8 class codes with a
colour table and the class names, 255 = nodata; ``--probabilities`` writes one band per class
(probability x 254, rounded) into a second such file beside it (``<name>_probabilities.tif``).
"""

import json
import math
import os
import pathlib

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import Resampling

from sslrs_tf.errors import UserError

#: the output's nodata (no valid input, or outside the scene)
NODATA = 255
#: columns finished at a time (bounds the temporaries of a wide scene)
COLUMN_BLOCK = 1024
#: GDAL's block cache for a command's reads and writes, MB (its default, 5 % of the RAM, would let memory grow
#: with the scene up to that)
GDAL_CACHE_MB = 64
#: a colour per class (hex), cycling for schemes with more classes; after the IGBP legend for DFC2020's eight
COLOURS = ("#009900", "#c6b044", "#b6ff05", "#27ff87", "#c24f44", "#a5a5a5", "#f9ffa4", "#1c0dff",
           "#fbff13", "#0000ff")


def tile_starts(length, tile, stride):
    """Start offsets of tiles of `tile` px every `stride` px along `length` px: the last tile ends at the edge
    (one tile at 0 when `length` <= `tile`)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def blend_window(tile):
    """``[tile, tile]`` weights: a squared sine along each axis, highest at the centre, small but positive at the
    edges (so a scene's border pixels, which one tile edge covers, keep a defined average)."""
    ramp = np.sin(np.pi * (np.arange(tile) + 0.5) / tile) ** 2
    return np.outer(ramp, ramp).astype(np.float32)


def check_output(out, overwrite, probabilities=False):
    """Refuses an output path that exists (unless `overwrite`) or whose folder does not."""
    out = pathlib.Path(out)
    for path in [out] + ([probabilities_path(out)] if probabilities else []):
        if path.exists() and not overwrite:
            raise UserError(f"--out: {path} exists; choose another path or pass --overwrite")
    if not out.parent.is_dir():
        raise UserError(f"--out {out}: folder {out.parent} does not exist")


def probabilities_path(out):
    """Where ``--probabilities`` writes: beside `out`, ``<name>_probabilities.tif`` (a colour table, which the class
    map carries, needs a GeoTIFF of one band)."""
    out = pathlib.Path(out)
    return out.with_name(f"{out.stem}_probabilities{out.suffix or '.tif'}")


class MapWriter:
    """Writes a class map (and probabilities) strip by strip into tiled GeoTIFFs, then makes them cloud-optimised.

    Args:
        out: the class map to write (with probabilities: also :func:`probabilities_path`).
        crs, transform, width, height: its grid.
        class_names: the classes, in code order (the colour table and the ``class_names`` tag).
        probabilities: also write one band per class.
    """

    def __init__(self, out, crs, transform, width, height, class_names, probabilities=False):
        self.class_names = list(class_names)
        self.outs = [pathlib.Path(out)] + ([probabilities_path(out)] if probabilities else [])
        self.partials = [o.with_name(f".{o.name}.partial.tif") for o in self.outs]
        block = 256 if min(width, height) >= 256 else 16 * max(1, min(width, height) // 16)
        self.datasets = [
            rasterio.open(partial, "w", driver="GTiff", width=width, height=height, count=count, dtype="uint8",
                          crs=crs, transform=transform, nodata=NODATA, tiled=True, blockxsize=block, blockysize=block,
                          compress="deflate")
            for partial, count in zip(self.partials, (1, len(self.class_names)))]

    def write(self, row, classes, probabilities=None, col=0):
        """Writes the block at (`row`, `col`): ``[h, w]`` codes (NODATA where invalid) and, with probabilities,
        ``[h, w, C]`` in [0, 1] (NaN where invalid)."""
        window = rasterio.windows.Window(col, row, classes.shape[1], classes.shape[0])
        self.datasets[0].write(classes.astype(np.uint8), 1, window=window)
        if probabilities is not None and len(self.datasets) > 1:
            scaled = np.where(np.isnan(probabilities), NODATA, np.rint(np.nan_to_num(probabilities) * 254))
            self.datasets[1].write(np.moveaxis(scaled.astype(np.uint8), -1, 0), window=window)

    def close(self):
        """Adds the colour table, class names and overviews, and copies each file into cloud-optimised layout."""
        codes = self.datasets[0]
        codes.write_colormap(1, {i: tuple(int(c[k:k + 2], 16) for k in (1, 3, 5)) + (255,)
                                 for i, c in ((i, COLOURS[i % len(COLOURS)]) for i in range(len(self.class_names)))})
        codes.set_band_description(1, "class")
        for ds in self.datasets:
            ds.update_tags(class_names=json.dumps(self.class_names))
        for i, name in enumerate(self.class_names if len(self.datasets) > 1 else []):
            self.datasets[1].set_band_description(i + 1, f"p({name}) x 254")
        for ds, partial, out in zip(self.datasets, self.partials, self.outs, strict=True):
            factors = [f for f in (2, 4, 8, 16, 32) if min(ds.width, ds.height) // f >= 256]
            if factors:
                ds.build_overviews(factors, Resampling.nearest)
            ds.close()
            rasterio.shutil.copy(partial, out, driver="COG", compress="deflate", blocksize=256,
                                 overview_resampling="nearest")
            os.remove(partial)

    def abort(self):
        """Removes what was written."""
        for ds, partial in zip(self.datasets, self.partials, strict=True):
            ds.close()
            if partial.exists():
                partial.unlink()


def predict_map(trained, scene, out, tile=None, overlap=None, batch_size=8, probabilities=False, progress=None):
    """Predicts `scene` (:class:`~sslrs_tf.inference.scenes.Scene`) with the downstream `trained` model
    (:func:`~sslrs_tf.inference.runs.open_run`) into the GeoTIFF `out`.

    Args:
        tile: tile side in pixels (default the run's crop size; a Swin takes only that).
        overlap: pixels shared by neighbouring tiles (segmentation; default a quarter tile).
        batch_size: tiles per model call.
        probabilities: also write per-class probability bands.
        progress: ``progress(done, total)`` after each batch of tiles, or None.

    Returns:
        ``{"width", "height", "transform", "tiles"}`` of the written raster.
    """
    if trained.kind not in ("segmentation", "single", "multi"):
        raise UserError(f"--run {trained.path}: a pre-training run gives embeddings, not classes "
                        "(python -m sslrs_tf.embed); a map needs a fine-tuned downstream run")
    tile = tile or trained.crop_size
    if str(trained.card.get("backbone", "")).startswith("swin") and tile != trained.crop_size:
        raise UserError(f"--tile {tile}: the run's Swin encoder takes {trained.crop_size} px tiles only")
    if trained.kind == "segmentation":
        overlap = tile // 4 if overlap is None else overlap
        if not 0 <= overlap < tile:
            raise UserError(f"--overlap must be in [0, {tile}) px. Received: {overlap}")
        return _segment(trained, scene, out, tile, tile - overlap, batch_size, probabilities, progress)
    return _classify(trained, scene, out, tile, batch_size, probabilities, progress)


def _run_batches(trained, scene, positions, tile, batch_size, on_result, progress, total, done):
    """Reads the tiles at `positions`, predicts them `batch_size` at a time, hands ``(position, probabilities,
    valid)`` to `on_result`; returns the updated count of tiles done."""
    for start in range(0, len(positions), batch_size):
        chunk = positions[start:start + batch_size]
        read = [scene.read(top, left, tile) for top, left in chunk]
        raw = {m: np.stack([r[0][m] for r in read]) for m in trained.inputs}
        probs = trained.predict(raw)
        for position, p, (_, valid) in zip(chunk, probs, read, strict=True):
            on_result(position, p, valid)
        done += len(chunk)
        if progress:
            progress(done, total)
    return done


def _segment(trained, scene, out, tile, stride, batch_size, probabilities, progress):
    width, height, classes = scene.width, scene.height, len(trained.class_names)
    rows, cols = tile_starts(height, tile, stride), tile_starts(width, tile, stride)
    weights = blend_window(tile)
    writer = MapWriter(out, scene.crs, scene.transform, width, height, trained.class_names, probabilities)
    # Accumulators for the scene rows the current row of tiles covers, [base, base + tile): rows above the
    # next row of tiles are final once this row is added, and are written and dropped.
    span = max(width, tile)
    total_p = np.zeros((tile, span, classes), np.float32)
    total_w = np.zeros((tile, span), np.float32)
    valid_any = np.zeros((tile, span), bool)
    done = 0
    try:
        for i, base in enumerate(rows):

            def add(position, p, valid):
                left = position[1]
                total_p[:, left:left + tile] += p * weights[..., None]
                total_w[:, left:left + tile] += weights
                valid_any[:, left:left + tile] |= valid

            done = _run_batches(trained, scene, [(base, left) for left in cols], tile, batch_size, add, progress,
                                len(rows) * len(cols), done)
            n = (rows[i + 1] if i + 1 < len(rows) else height) - base
            # Final rows, then the shift up, a block of columns at a time: the temporaries stay small however
            # wide the scene.
            for left in range(0, width, COLUMN_BLOCK):
                right = min(left + COLUMN_BLOCK, width)
                p = total_p[:n, left:right] / np.maximum(total_w[:n, left:right], 1e-12)[..., None]
                ok = valid_any[:n, left:right]
                codes = np.where(ok, np.argmax(p, axis=-1), NODATA)
                writer.write(base, codes, np.where(ok[..., None], p, np.nan) if probabilities else None, left)
            for left in range(0, span, COLUMN_BLOCK):
                right = min(left + COLUMN_BLOCK, span)
                for array in (total_p, total_w, valid_any):
                    array[:tile - n, left:right] = array[n:, left:right]
                    array[tile - n:, left:right] = 0
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"width": width, "height": height, "transform": scene.transform, "tiles": done}


def _classify(trained, scene, out, tile, batch_size, probabilities, progress):
    rows, cols = math.ceil(scene.height / tile), math.ceil(scene.width / tile)
    transform = scene.transform @ rasterio.Affine.scale(tile)
    writer = MapWriter(out, scene.crs, transform, cols, rows, trained.class_names, probabilities)
    done = 0
    try:
        for r in range(rows):
            codes = np.full((1, cols), NODATA, np.int64)
            probs = np.full((1, cols, len(trained.class_names)), np.nan, np.float32)

            def add(position, p, valid):
                c = position[1] // tile
                if valid.mean() >= 0.5:  # a tile mostly outside the scene or nodata has no label
                    codes[0, c], probs[0, c] = int(np.argmax(p)), p

            done = _run_batches(trained, scene, [(r * tile, c * tile) for c in range(cols)], tile, batch_size, add,
                                progress, rows * cols, done)
            writer.write(r, codes, probs if probabilities else None)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"width": cols, "height": rows, "transform": transform, "tiles": done}


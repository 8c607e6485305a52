"""Per-tile embeddings of a whole scene into a Parquet file: to find places that look like a given one.

    python -m sslrs_tf.embed --run RUN --s2 S2.tif --s1 S1.tif --out tiles.parquet

The scene is cut into tiles on a regular grid (as a classifier's map); a tile at least half
valid gets one row: its grid position, its footprint in the raster's CRS (``minx`` ... ``maxy``
and as WKT), its centre in longitude/latitude, the share of valid pixels, and the pooled
embedding of each encoder (``embedding_s1``, ``embedding_s2`` or ``embedding_s1s2``), read
with pyarrow. The file's metadata holds the CRS, the tile size and the encoders' card.
"""

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from rasterio.warp import transform as warp_points

from sslrs_tf.errors import UserError
from sslrs_tf.inference.runs import Embedder

#: a tile with less than this share of valid pixels gets no row
MIN_VALID = 0.5


def encoders_of(trained):
    """The :class:`~sslrs_tf.inference.runs.Embedder` of a run: its own (pre-training, converted encoders) or its
    downstream model's encoders (fine-tuning)."""
    if trained.kind == "embedding":
        return trained.model
    encoders = trained.model.encoders()
    if not encoders:
        raise UserError(f"--run {trained.path}: its model ({trained.card.get('backbone')}) has no encoder to embed "
                        "with")
    if any(not all(m in trained.inputs for m in trained.model.streams[name]) for name in encoders):
        raise UserError(f"--run {trained.path}: an encoder reads a sensor the run feeds zeros "
                        f"({trained.model.inputs_kind})")
    return Embedder(encoders)


def embed_scene(trained, scene, out, tile=None, batch_size=8, progress=None):
    """Writes the embeddings of `scene`'s tiles (:class:`~sslrs_tf.inference.scenes.Scene`) by the encoders of
    `trained` (:func:`~sslrs_tf.inference.runs.open_run`) into the Parquet file `out`; returns the row count."""
    tile = tile or trained.crop_size
    if str(trained.card.get("backbone", "")).startswith("swin") and tile != trained.crop_size:
        raise UserError(f"--tile {tile}: the run's Swin encoders take {trained.crop_size} px tiles only")
    embedder = encoders_of(trained)
    embed = trained.batched(lambda raw: embedder(trained.prepare(raw)))
    rows, cols = math.ceil(scene.height / tile), math.ceil(scene.width / tile)
    positions = [(r, c) for r in range(rows) for c in range(cols)]
    records = {k: [] for k in ("row", "col", "minx", "miny", "maxx", "maxy", "valid_fraction")}
    vectors = {f"embedding_{name}": [] for name in embedder.encoders}
    for start in range(0, len(positions), batch_size):
        chunk = positions[start:start + batch_size]
        read = [scene.read(r * tile, c * tile, tile) for r, c in chunk]
        raw = {m: np.stack([x[0][m] for x in read]) for m in trained.inputs}
        embedded = embed(raw)
        for i, ((r, c), (_, valid)) in enumerate(zip(chunk, read, strict=True)):
            share = float(valid.mean())
            if share < MIN_VALID:
                continue
            x0, y0 = scene.transform @ (c * tile, r * tile)
            x1, y1 = scene.transform @ ((c + 1) * tile, (r + 1) * tile)
            for key, value in zip(records, (r, c, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), share)):
                records[key].append(value)
            for name, value in embedded.items():
                vectors[f"embedding_{name}"].append(value[i].astype(np.float32))
        if progress:
            progress(start + len(chunk), len(positions))
    cx = [(a + b) / 2 for a, b in zip(records["minx"], records["maxx"], strict=True)]
    cy = [(a + b) / 2 for a, b in zip(records["miny"], records["maxy"], strict=True)]
    lon, lat = warp_points(scene.crs, "EPSG:4326", cx, cy) if cx else ([], [])
    wkt = [f"POLYGON(({a} {b}, {c} {b}, {c} {d}, {a} {d}, {a} {b}))"
           for a, b, c, d in zip(records["minx"], records["miny"], records["maxx"], records["maxy"], strict=True)]
    columns = {**records, "footprint_wkt": wkt, "lon": list(lon), "lat": list(lat)}
    arrays = {k: pa.array(v) for k, v in columns.items()}
    for key, values in vectors.items():
        width = values[0].shape[0] if values else 0
        arrays[key] = pa.FixedSizeListArray.from_arrays(
            pa.array(np.concatenate(values) if values else np.zeros(0, np.float32)), width)
    table = pa.table(arrays).replace_schema_metadata({
        "crs": scene.crs.to_string(), "tile": str(tile), "card": json.dumps(trained.card)})
    try:
        pq.write_table(table, out)
    except OSError as err:
        raise UserError(f"--out {out}: cannot write ({err})") from None
    return table.num_rows

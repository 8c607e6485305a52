"""A finished run as a TensorFlow SavedModel for serving: raw Sentinel input in, probabilities or embeddings out.

    python -m sslrs_tf.export --run RUN --out DIR

The serving signature takes what a user has, not what the pipeline made of it: S1 in dB
(float32) and S2 as reflectance x 10 000 (float32; the ``serve_uint16`` signature takes
uint16), ``[N, H, W, C]`` with the bands the card lists, in that order. Clipping and
normalisation happen inside the graph, with the same ops as the training pipeline. It
returns class probabilities (softmax; sigmoid for multi-label; per pixel for segmentation)
or, for a pre-training run, each encoder's pooled embedding. The SavedModel needs only
TensorFlow to load (``tf.saved_model.load``) and serves under TF Serving as it is;
``card.json`` beside it says what goes in and comes out.
"""

import json
import pathlib
import shutil

import keras
import tensorflow as tf

from sslrs_tf.errors import UserError
from sslrs_tf.inference.maps import check_output

#: the signatures: their name, and the dtype of the S2 input they take
SIGNATURES = {"serve": tf.float32, "serve_uint16": tf.uint16}


def serving_fn(trained):
    """The function the SavedModel serves: ``{sensor: raw [N, H, W, C]}`` -> ``{"probabilities": ...}`` or
    ``{"embedding_<encoder>": [N, D]}`` (:class:`~sslrs_tf.inference.runs.TrainedModel` `trained`)."""

    def serve(raw):
        out = trained.forward(raw)
        if trained.kind == "embedding":
            return {f"embedding_{name}": tf.cast(v, tf.float32) for name, v in out.items()}
        return {"probabilities": out}

    return serve


def input_signature(trained, s2_dtype):
    """The serving inputs of `trained`: one ``TensorSpec`` per sensor it reads, named after the sensor; a Swin's
    side is fixed (its windows are built for one size)."""
    side = trained.crop_size if str(trained.card.get("backbone", "")).startswith("swin") else None
    return {m: tf.TensorSpec([None, side, side, len(bands)], s2_dtype if m == "s2" else tf.float32, name=m)
            for m, (bands, _) in trained.inputs.items()}


def export_saved_model(trained, out, overwrite=False):
    """Writes `trained` (:func:`~sslrs_tf.inference.runs.open_run`) as a SavedModel into `out`, with
    ``card.json`` beside it (its ``serving`` entry: the signatures' inputs and outputs, and the classes).

    Raises:
        UserError: `out` exists (unless `overwrite`) or cannot be written.
    """
    check_output(out, overwrite)
    out = pathlib.Path(out)
    archive = keras.export.ExportArchive()
    archive.track(trained.model)
    serve = serving_fn(trained)
    for name, s2_dtype in SIGNATURES.items():
        if name == "serve_uint16" and "s2" not in trained.inputs:
            continue
        archive.add_endpoint(name, serve, input_signature=[input_signature(trained, s2_dtype)])
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        archive.write_out(str(partial), verbose=False)
        card = dict(trained.card)
        card["serving"] = {
            "signatures": [n for n in SIGNATURES if n == "serve" or "s2" in trained.inputs],
            "inputs": {m: {"bands": list(bands), "units": "dB" if m == "s1" else "reflectance x 10000",
                           "normalization": norm.method} for m, (bands, norm) in trained.inputs.items()},
            "outputs": (["probabilities"] if trained.kind != "embedding"
                        else [f"embedding_{name}" for name in trained.model.encoders]),
            "kind": trained.kind, "classes": list(trained.class_names),
            "side": input_signature(trained, tf.float32)[next(iter(trained.inputs))].shape[1],
        }
        (partial / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"--out {out}: cannot write the SavedModel ({err.strerror or err})") from None
    return card

"""``python -m sslrs_tf.export``: a SavedModel that takes raw Sentinel input and gives what the Keras model gives on
the input the training pipeline's preparation makes (here written again in NumPy), loaded by a process that cannot
import sslrs_tf."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from sslrs_tf.data.labels import CLASS_NAMES
from sslrs_tf.export import main as export_main
from sslrs_tf.inference.runs import open_run
from tests.inference.test_maps import numpy_per_sample_max

#: a process without sslrs_tf: every export's two signatures on the raw arrays, outputs to an .npz
LOAD_ALONE = textwrap.dedent("""
    import sys
    sys.modules["sslrs_tf"] = None  # an import of it now fails
    import numpy as np
    import tensorflow as tf
    raw = dict(np.load(sys.argv[1]))
    out = {}
    for i, path in enumerate(sys.argv[3:]):
        loaded = tf.saved_model.load(path)
        for name in ("serving_default", "serve_uint16"):
            wanted = loaded.signatures[name].structured_input_signature[1]
            given = {k: tf.constant(v) for k, v in raw.items() if k in wanted}
            if name == "serve_uint16":
                given["s2"] = tf.constant(raw["s2"].astype(np.uint16))
            for key, value in loaded.signatures[name](**given).items():
                out[f"{i}/{name}/{key}"] = value.numpy()
    np.savez(sys.argv[2], **out)
""")


def numpy_softmax(z):
    z = np.exp(z - z.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def raw():
    """Four raw 32 px samples as a user has them: S1 in dB beyond the clip range with NaN pixels, S2 reflectance
    x 10 000 (whole numbers, some above 10 000)."""
    rng = np.random.default_rng(0)
    s1 = rng.uniform(-35.0, 5.0, (4, 32, 32, 2)).astype(np.float32)
    s1[0, :3, :5, 0] = np.nan
    s2 = rng.integers(0, 12000, (4, 32, 32, 13)).astype(np.float32)
    return {"s1": s1, "s2": s2}


@pytest.mark.slow
def test_saved_models_take_raw_input_and_match_the_keras_models_without_sslrs_tf(quickstarted, pretrained_run, raw,
                                                                                tmp_path, capsys):
    downstream = quickstarted.dir / "single" / "dualsimclr_frozen" / "f0.5" / "seed0"
    outs = [tmp_path / "classifier", tmp_path / "encoders"]
    for run, out in zip((downstream, pretrained_run), outs, strict=True):
        assert export_main(["--run", str(run), "--out", str(out)]) == 0
    assert "signatures serve, serve_uint16 take s1 [N, H, W, 2], s2 [N, H, W, 13] raw" in capsys.readouterr().out
    np.savez(tmp_path / "raw.npz", **raw)
    alone = subprocess.run([sys.executable, "-c", LOAD_ALONE, str(tmp_path / "raw.npz"), str(tmp_path / "out.npz"),
                            *map(str, outs)], capture_output=True, text=True, cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr[-3000:]
    served = dict(np.load(tmp_path / "out.npz"))

    prepared = {"s1": numpy_per_sample_max(raw["s1"], -25.0, 0.0), "s2": numpy_per_sample_max(raw["s2"], 0.0, 1e4)}
    classifier = open_run(downstream)
    card = json.loads((outs[0] / "card.json").read_text())
    # The run's card names its classes (DFC2020's eight), and the export's card repeats them.
    assert card["serving"]["classes"] == list(classifier.class_names) == card["downstream"]["classes"] == \
        list(CLASS_NAMES)
    expected = numpy_softmax(classifier.model(prepared, training=False).numpy())
    for name in ("serving_default", "serve_uint16"):
        np.testing.assert_allclose(served[f"0/{name}/probabilities"], expected, rtol=0, atol=1e-5)
    encoders = open_run(pretrained_run)
    assert encoders.kind == "embedding" and set(encoders.model.encoders) == {"s1", "s2"}
    for m in ("s1", "s2"):
        want = encoders.model.encoders[m](prepared[m], training=False)["pooled"].numpy()
        for name in ("serving_default", "serve_uint16"):
            np.testing.assert_allclose(served[f"1/{name}/embedding_{m}"], want, rtol=1e-5, atol=1e-5)


def test_export_errors_are_one_line(pretrained_run, tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    for argv, message in [
        (["--run", str(pretrained_run), "--out", str(tmp_path / "taken")],
         f"--out: {tmp_path / 'taken'} exists; choose another path or pass --overwrite"),
        (["--run", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
         f"--run {tmp_path / 'none'}: no such directory"),
        (["--run", str(tmp_path), "--out", str(tmp_path / "o")],
         f"--run {tmp_path}: neither a run (no config.yaml) nor an export directory (no card.json)"),
    ]:
        assert export_main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"error: {message}\n", err

"""Helpers shared by the tests: paths to the committed and the real data."""

import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SEN12MS_DUMMY = ROOT / "tfds_builders" / "sen12ms" / "dummy_data"
DFC2020_DUMMY = ROOT / "tfds_builders" / "dfc2020" / "dummy_data"


def realdata(*parts):
    """Path below ../shared/realdata, or a skip (with the reason) where it is absent."""
    path = REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real Sentinel files not available here: {path} is absent")
    return path


def copy_tree(src, dst):
    """Copies a dummy-data folder so a test can damage its copy."""
    shutil.copytree(src, dst)
    return dst


def eager_and_in_tf_data(fn, *args):
    """Runs `fn(*args)` eagerly and inside a tf.data map; returns both results as NumPy.

    Data ops differ between the two more often than one expects (shapes, dtypes,
    Python control flow), so each is checked in both.
    """
    import tensorflow as tf

    eager = fn(*args)
    ds = tf.data.Dataset.from_tensors(tuple(args)).map(lambda *a: fn(*a))
    graph = next(iter(ds))
    to_np = lambda x: x.numpy() if hasattr(x, "numpy") else x  # noqa: E731
    return to_np(eager), to_np(graph)

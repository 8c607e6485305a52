"""Helpers shared by the tests: paths to the committed and the real data."""

import contextlib
import pathlib
import shutil

import pytest

from sslrs_tf.data.bands import S2_BANDS

ROOT = pathlib.Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"
SEN12MS_DUMMY = ROOT / "tfds_builders" / "sen12ms" / "dummy_data"
DFC2020_DUMMY = ROOT / "tfds_builders" / "dfc2020" / "dummy_data"
CHIPS_DUMMY = ROOT / "tfds_builders" / "paired_chips" / "dummy_data"


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


#: Beam pipeline flags, as `tfds build --beam_pipeline_options=` passes them: Beam's local runner with two worker
#: processes, and in this process
BEAM_TWO_PROCESSES = ["--runner=DirectRunner", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
BEAM_IN_PROCESS = ["--runner=DirectRunner"]


def beam_options(flags):
    """``PipelineOptions`` of a list of flags, or None (a plain build) for None."""
    if flags is None:
        return None
    from apache_beam.options.pipeline_options import PipelineOptions

    return PipelineOptions(flags)


def tfds_records(builder, split):
    """The records of a built split as parsed ``tf.train.Example`` protos, in file order (their bytes may differ
    between builds: a proto map's fields are serialised in no fixed order)."""
    import tensorflow as tf

    files = sorted(pathlib.Path(builder.data_dir).glob(f"*-{split}.tfrecord-*"))
    assert files, f"no records of {split} in {builder.data_dir}"
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset([str(f) for f in files])]


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


# A distinct raw value per S2 band name, for fakes in which a band's position must not matter.
BAND_VALUE = {b: 100.0 * (i + 1) for i, b in enumerate(S2_BANDS)}


def eurosat_fake(n=6, noise=False):
    """A mock ``_as_dataset`` whose images hold each band's BAND_VALUE, stacked in EuroSAT's own order.

    `noise`: multiply each pixel by a random factor in [0.5, 1.5] (identical images teach nothing).
    """
    import numpy as np
    import tensorflow as tf

    from sslrs_tf.data.catalog import CATALOG

    order = CATALOG["eurosat"].bands
    image = np.ones((n, 64, 64, 13), np.float32) * np.array([BAND_VALUE[b] for b in order], np.float32)
    if noise:
        image *= np.random.default_rng(0).uniform(0.5, 1.5, image.shape).astype(np.float32)
    data = {"sentinel2": image, "label": np.arange(n, dtype=np.int64) % 10, "filename": [f"{i}.tif" for i in range(n)]}
    return lambda self, split, decoders=None, read_config=None, **kwargs: tf.data.Dataset.from_tensor_slices(data)


def paired_batches(n, size=32, batch=8, seed=0):
    """`n` random S1/S2 batches whose S2 shares structure with S1 (something for the views to agree on)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        s1 = rng.normal(size=(batch, size, size, 2)).astype(np.float32)
        # S2 shares structure with S1, so the views have something to agree on.
        s2 = np.concatenate([s1, rng.normal(size=(batch, size, size, 11)).astype(np.float32) * 0.3 + s1[..., :1]], -1)
        out.append({"s1": s1, "s2": s2})
    return out


def tensorboard_logs(folder):
    """{tag: [(step, value), ...]} of every TensorBoard event file below `folder` (values as NumPy)."""
    import tensorflow as tf
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = {}
    for events in sorted(pathlib.Path(folder).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events), size_guidance={"tensors": 0, "scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["tensors"]:
            logs.setdefault(tag, []).extend((e.step, tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag))
        for tag in acc.Tags()["scalars"]:
            logs.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return logs


def exported_weights(run_dir, *modalities):
    """The weights of a run's exported encoders (``export/encoder_<modality>.keras``), one flat list."""
    import keras

    import sslrs_tf.models.swin  # noqa: F401  (registers the Swin encoder's layers, as docs/training.md says)

    return [w for m in modalities
            for w in keras.saving.load_model(pathlib.Path(run_dir) / "export" / f"encoder_{m}.keras").get_weights()]


#: a shipped config run briefly (tests/e2e/test_methods.py runs each method's train.py with it)
SHORT_RUN = ("train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=8", "data.crop_size=32")


def card_of(run_dir):
    """The ``export/card.json`` of a finished run, as a dict."""
    import json

    return json.loads((pathlib.Path(run_dir) / "export" / "card.json").read_text())


@contextlib.contextmanager
def file_size_limit(size):
    """Files of this process cannot grow past `size` bytes (what ``ulimit -f`` sets): a write beyond fails as on
    a full disk (Python ignores the SIGXFSZ signal that would otherwise end the process)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def assert_cut_from_records(builder, split, **settings):
    """The pipeline's parser finds every raster it reads (with `settings`: ``make_dataset``'s keywords) inside the
    records of `split` of `builder`, and cuts crops from the records themselves, not from copies made by
    ``parse_example`` (its fallback for records laid out otherwise, which would pass every other test, slowly)."""
    import numpy as np
    import tensorflow as tf

    from sslrs_tf.data.pipeline import as_source, read_settings

    args = dict(modalities=("s1", "s2"), bands=None, normalization="per_sample_max", label=None, label_fraction=1.0,
                eval_crop="center")
    settings = read_settings(**{**args, **settings})
    parser = as_source(builder).reader(split, settings).parse
    files = [str(f) for f in builder.info.splits[split].filepaths]
    serialized = next(iter(tf.data.TFRecordDataset(files).batch(4)))
    raw, offsets = parser.rasters(serialized)
    assert set(raw) == set(settings.modalities) | ({parser.label_source} if settings.label else set())
    for k in raw:
        np.testing.assert_array_equal(raw[k].numpy(), serialized.numpy())
        assert (offsets[k].numpy() > 0).all()

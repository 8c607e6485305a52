"""Fixtures shared by the tests: datasets built once per session (the builders' dummy data, a small
synthetic world), a finished tiny pre-training run, the quick start's output, a two-replica strategy."""

import pytest
import tensorflow_datasets as tfds

from tests.helpers import DFC2020_DUMMY, SEN12MS_DUMMY


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """{"sen12ms": builder, "dfc2020": builder}: the dummy data (32 px) built with the real builders."""
    from tfds_builders.dfc2020 import Builder as Dfc2020, Dfc2020Config
    from tfds_builders.sen12ms import Builder as Sen12ms, Sen12msConfig

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    out = {}
    for name, cls, config, manual in (
        ("sen12ms", Sen12ms, Sen12msConfig(name="dummy", patch_size=32), SEN12MS_DUMMY),
        ("dfc2020", Dfc2020, Dfc2020Config(name="dummy", patch_size=32), DFC2020_DUMMY),
    ):
        builder = cls(config=config, data_dir=data_dir)
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
        out[name] = builder
    return out


SMALL_WORLD = {"patches": 96, "size": 48, "seed": 0, "dfc_validation": 16, "dfc_test": 16}


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A small synthetic world built once; returns the train.py overrides that point a config at it."""
    from sslrs_tf.datasets import prepare_world

    root = tmp_path_factory.mktemp("world")
    prepare_world(root / "synthetic", root / "tfds", SMALL_WORLD)
    return ["data.source=synthetic", f"data.synthetic.dir={root / 'synthetic'}", f"data.data_dir={root / 'tfds'}",
            *(f"data.synthetic.{k}={v}" for k, v in SMALL_WORLD.items())]


@pytest.fixture(scope="session")
def pretrained_run(small_world, tmp_path_factory):
    """A finished tiny Dual-SimCLR run (configs/tiny.yaml) on the small world: its run directory.

    In-process (train.py's main, whose return value is the exit status): a subprocess would
    pay TensorFlow's start-up again.
    """
    from tests.helpers import ROOT
    from train import main as train_main

    run_dir = tmp_path_factory.mktemp("pretrained") / "run"
    code = train_main(["--config", str(ROOT / "configs" / "tiny.yaml"), f"run.dir={run_dir}", *small_world])
    assert code == 0
    return run_dir


@pytest.fixture(scope="session")
def quickstarted(small_world, pretrained_run, tmp_path_factory):
    """`make quickstart`'s entry point, shortened, run once: its printed output, its run, its protocol.

    The pre-training step is a copy of the session's finished tiny run (the quick start resumes it
    and only exports); the protocol is small: Dual-SimCLR frozen and OnlySen-2 at 50 % of the
    labels, one seed. tests/test_quickstart.py checks what it printed, and
    tests/evaluation/test_protocol.py the protocol's runs and how it continues after an interruption.
    """
    import contextlib
    import io
    import shutil
    from types import SimpleNamespace

    import yaml

    from sslrs_tf.quickstart import main as quickstart_main
    from tests.helpers import ROOT

    root = tmp_path_factory.mktemp("quickstart")
    run = root / "run"
    shutil.copytree(pretrained_run, run)
    protocol = root / "protocol.yaml"
    protocol.write_text(yaml.safe_dump({
        "dir": str(root / "protocol"), "base": str(ROOT / "configs" / "finetune_tiny.yaml"),
        "models": ["Dual-SimCLR frozen", "OnlySen-2"], "labels": ["single"], "label_fractions": [0.5], "seeds": [0],
        "overrides": [*small_world, "train.epochs=1"], "probe": ["optimizer.lr=1e-2"],
        "baseline": ["optimizer.encoder_lr=null"]}))
    out = io.StringIO()
    # In-process (the entry point's main; `python -m sslrs_tf.quickstart` adds only the interpreter).
    with contextlib.redirect_stdout(out):
        code = quickstart_main(["--config", str(ROOT / "configs" / "tiny.yaml"), "--protocol", str(protocol),
                                f"run.dir={run}", *small_world])
    assert code == 0, out.getvalue()[-3000:]
    return SimpleNamespace(out=out.getvalue(), run=run, protocol=protocol, dir=root / "protocol")


@pytest.fixture(scope="session")
def two_replicas():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Separate strategies over the same devices restart their collective instance keys:
    a later strategy's first collective (say an int32 all-gather) then meets the cached
    parameters of an earlier one's (a float32 all-reduce) and TF aborts ("Collective
    instance 100 expected type 0 ... but got type 2"). One shared strategy keeps counting.
    """
    import tensorflow as tf

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, "conftest.py creates two logical CPU devices"
    return tf.distribute.MirroredStrategy(devices)

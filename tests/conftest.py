"""Fixtures shared by the tests: datasets built once per session from the builders' dummy data."""

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
    from sslrs_tf.data.build import prepare_world

    root = tmp_path_factory.mktemp("world")
    prepare_world(root / "synthetic", root / "tfds", SMALL_WORLD)
    return ["data.source=synthetic", f"data.synthetic.dir={root / 'synthetic'}", f"data.data_dir={root / 'tfds'}",
            *(f"data.synthetic.{k}={v}" for k, v in SMALL_WORLD.items())]


@pytest.fixture(scope="session")
def pretrained_run(small_world, tmp_path_factory):
    """A finished tiny Dual-SimCLR run (configs/tiny.yaml) on the small world: its run directory."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    run_dir = tmp_path_factory.mktemp("pretrained") / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), f"run.dir={run_dir}",
           *small_world]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


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

"""The package as `pip install .` installs it, used from an empty folder, not from the clone.

The wheel is built from the repository and installed into a fresh virtual environment. Its
dependencies (TensorFlow and the rest, ~2 GB) are not installed a second time: a ``.pth`` file
puts the test environment's site-packages after the new environment's own, so ``sslrs_tf``,
``tfds_builders``, the shipped configs and the console commands all come from the wheel (the
test checks where ``sslrs_tf`` is imported from). The editable install of the test environment
is not seen: ``.pth`` files are only read in site directories, not in directories they add.
"""

import pathlib
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile

import pytest
import yaml

from sslrs_tf.evaluation.protocol import SMOKE_WORLD
from tests.e2e.chains import run
from tests.helpers import ROOT, card_of

pytestmark = pytest.mark.e2e


#: what a checkout holds besides the source, at its top level (sslrs_tf/data is source: only the top)
_NOT_SOURCE = {".git", ".venv", "build", "data", "runs", ".pytest_cache"}


def _not_source(folder, names):
    """shutil.copytree's `ignore`: the checkout's own outputs, at its top, and caches anywhere."""
    top = pathlib.Path(folder) == ROOT
    return [n for n in names if (top and n in _NOT_SOURCE) or n == "__pycache__" or n.endswith(".egg-info")]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh virtual environment with the wheel of the repository installed: its bin folder."""
    root = tmp_path_factory.mktemp("installed")
    # Built from a copy: setuptools' build/ folder keeps files a later source no longer has, and the
    # checkout stays as it is while the other tests run.
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=_not_source)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir",
        root / "dist", source)
    (wheel,) = (root / "dist").glob("sslrs_tf-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sslrs_tf/configs/tiny.yaml" in names and "tfds_builders/sen12ms/sen12ms_dataset_builder.py" in names
    assert "sslrs_tf/data/pipeline.py" in names
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)  # this environment's pip installs into it
    run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
        "--quiet", wheel)
    purelib = sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)})
    (root / "venv" / purelib.split(str(venv) + "/")[1] / "test_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    return venv / "bin"


#: a smaller synthetic world than tiny.yaml's (the one the protocol smokes use), written in the empty folder
SMALL = [f"data.synthetic.{k}={v}" for k, v in SMOKE_WORLD.items()]


@pytest.fixture(scope="module")
def trained(installed, tmp_path_factory):
    """An empty folder in which ``sslrs-train --config tiny.yaml`` ran: the folder and the finished process."""
    folder = tmp_path_factory.mktemp("empty")
    return folder, run(installed / "sslrs-train", "--config", "tiny.yaml", *SMALL, cwd=folder)


def test_sslrs_train_trains_a_shipped_config_by_name_in_an_empty_folder(installed, trained):
    folder, process = trained
    where = run(installed / "python", "-c", "import sslrs_tf; print(sslrs_tf.__file__)", cwd=folder).stdout
    assert where.startswith(str(installed.parent)), where  # the wheel's package, not the clone's
    assert "done: encoders and card.json in runs/tiny/export" in process.stdout
    card = card_of(folder / "runs" / "tiny")
    assert card["method"] == "dual_simclr" and card["data"]["synthetic"] is True
    assert (folder / "data" / "synthetic" / "world.json").is_file()  # the synthetic world, written here
    # A name that is no shipped config: one line listing the shipped ones.
    refused = subprocess.run([installed / "sslrs-train", "--config", "tiny2.yaml"], cwd=folder,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "no shipped config 'tiny2'; shipped configs: dual_simclr, " in refused.stderr
    # The quick start's default protocol, as the installed package finds it.
    found = run(installed / "python", "-c", "from sslrs_tf.config import find_config; "
                "print(find_config('protocol_quickstart.yaml', kind='protocol'))", cwd=folder).stdout.strip()
    assert found.startswith(str(installed.parent)) and found.endswith("sslrs_tf/configs/protocol_quickstart.yaml")


def test_the_quick_start_runs_from_any_folder_with_shipped_configs_by_name(installed, trained):
    # The quick start's pre-training run is the finished tiny run (so it only exports it again);
    # its protocol is one short baseline run on a shipped base config named, not found beside it.
    folder, _ = trained
    (folder / "protocol.yaml").write_text(yaml.safe_dump({
        "dir": "runs/protocol", "base": "finetune_tiny.yaml", "models": ["OnlySen-2"], "label_fractions": [1.0],
        "seeds": [0], "overrides": ["train.epochs=1", *SMALL]}))
    quick = run(installed / "python", "-m", "sslrs_tf.quickstart", "--config", "tiny.yaml", "--protocol",
                "protocol.yaml", *SMALL, cwd=folder)
    assert "| Dual-SimCLR pre-trained" in quick.stdout and "| OnlySen-2 |" in quick.stdout
    # Nothing on its standard error but progress bars: none of TensorFlow's or TFDS's harmless notes.
    assert not [x for x in quick.stderr.splitlines() if x.strip() and "it/s]" not in x and "%|" not in x], quick.stderr
    assert (folder / "runs" / "protocol" / "label_fractions.png").is_file()

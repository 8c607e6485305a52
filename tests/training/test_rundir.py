"""The run directory: the same run resumes, a different one is refused once it trained; an export is replaced
whole or not at all; a directory that cannot be written is one line."""

import contextlib
import json
import os
import pathlib
import shutil
import tempfile

import keras
import pytest
import yaml

from sslrs_tf.config import load_config
from sslrs_tf.errors import UserError
from sslrs_tf.training.rundir import RunDir
from tests.helpers import ROOT, file_size_limit


def test_a_run_written_before_a_key_existed_still_resumes(tmp_path):
    config = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={tmp_path / 'run'}"])
    run = RunDir(config.run.dir)
    run.start(config)
    written = yaml.safe_load(run.config.read_text())
    del written["data"]["missing_bands"]  # as an older version of the library wrote it
    run.config.write_text(yaml.safe_dump(written))
    run.start(config)  # same run: no error
    run.checkpoints.mkdir()
    (run.checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')  # it trained
    other = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={tmp_path / 'run'}", "data.missing_bands=zeros"])
    with pytest.raises(UserError, match=r"holds a run with a different config \(data.missing_bands differ\)"):
        run.start(other)


def test_a_start_that_never_saved_a_checkpoint_leaves_the_directory_to_the_next_config(tmp_path):
    run = RunDir(tmp_path / "run")
    failed = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={run.path}", "data.config=default"])
    run.start(failed)  # ... and the run stopped before its first checkpoint
    (run.tensorboard / "train").mkdir(parents=True)
    fixed = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={run.path}"])
    run.start(fixed)
    assert yaml.safe_load(run.config.read_text())["data"]["config"] == "all" and not run.tensorboard.exists()
    run.export.mkdir()  # an exported run is kept, checkpoints or not
    with pytest.raises(UserError, match=r"holds a run with a different config \(data.config differ\)"):
        run.start(failed)


@contextlib.contextmanager
def without_root():
    """Root ignores file permissions: inside the block this process acts as the user ``nobody`` (unchanged
    when not run as root)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def snapshot(folder):
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())}


@pytest.fixture()
def finished(pretrained_run, tmp_path):
    """A copy of the session's finished tiny run, its config, and its model restored from its export."""
    from sslrs_tf.experiment import Experiment

    run = RunDir(shutil.copytree(pretrained_run, tmp_path / "run"))
    config = load_config(run.config, [f"run.dir={run.path}"])
    _, model = Experiment(config).restored(run.weights, config.data.validation_split, batch_size=2)
    return run, config, model


def test_an_export_cut_short_by_a_full_disk_leaves_the_previous_export_as_it_was(finished):
    run, config, model = finished
    before = snapshot(run.export)
    encoders = max(len(before[n]) for n in before if n.endswith(".keras"))
    limit = encoders * 3 // 2  # the encoders fit, the whole model's weights (both encoders and heads) do not
    assert encoders < limit < len(before["model.weights.h5"])
    with file_size_limit(limit), pytest.raises(UserError) as err:
        run.export_encoders(model, config, {"loss": 1.0})
    assert str(err.value) == (f"run.dir {run.path}: cannot write the export (File too large); the previous export "
                              "is kept; make room and run the same command to export again")
    assert snapshot(run.export) == before and not (run.path / ".export.partial").exists()
    keras.saving.load_model(run.export / "encoder_s2.keras")  # still loads
    # With room, the export is replaced as a whole.
    card = run.export_encoders(model, config, {"loss": 1.0})
    assert json.loads((run.export / "card.json").read_text()) == card and card["final_metrics"] == {"loss": 1.0}
    assert not (run.path / ".export.partial").exists() and not (run.path / ".export.previous").exists()


def test_an_export_stopped_between_its_two_renames_is_found_again(pretrained_run, tmp_path):
    run = RunDir(shutil.copytree(pretrained_run, tmp_path / "run"))
    before = snapshot(run.export)
    os.replace(run.export, run.path / ".export.previous")  # the old export moved aside, the new not yet in place
    assert snapshot(RunDir(run.path).export) == before


def test_a_run_directory_that_cannot_be_written_is_one_line():
    with tempfile.TemporaryDirectory() as folder:  # not under pytest's base folder, which only its owner may enter
        locked = pathlib.Path(folder) / "locked"
        locked.mkdir(mode=0o555)
        os.chmod(folder, 0o755)
        config = load_config(ROOT / "configs" / "tiny.yaml", [f"run.dir={locked / 'run'}"])
        with without_root(), pytest.raises(UserError) as err:
            RunDir(config.run.dir).start(config)
    assert str(err.value) == f"run.dir {locked / 'run'}: cannot write there (Permission denied)"

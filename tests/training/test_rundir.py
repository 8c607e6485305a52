"""The run directory's config check: the same run resumes, a different one is refused once it trained."""

import pytest
import yaml

from sslrs_tf.config import load_config
from sslrs_tf.errors import UserError
from sslrs_tf.training.rundir import RunDir
from tests.helpers import ROOT


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

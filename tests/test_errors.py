"""What every command line does around its work (sslrs_tf.errors.run_entry_point): exit statuses,
one-line errors, TensorFlow's start-up logs kept out of a command's output but not a host program's."""

import os
import subprocess
import sys

from sslrs_tf.errors import DataError, TrainingStopped, UserError, run_entry_point
from tests.helpers import ROOT

SHOW = "import os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"


def python(code):
    """What `code` prints in a fresh interpreter whose environment sets neither TensorFlow variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True).stdout.split()


def raising(error):
    def action():
        raise error
    return action


def test_exit_status_and_one_line_on_stderr_for_each_outcome(capsys):
    assert run_entry_point(lambda: print("done")) == 0
    assert capsys.readouterr() == ("done\n", "")
    assert run_entry_point(raising(DataError("/data/x.tif", "has 3 bands, expected 2 (VV, VH)"))) == 2
    assert capsys.readouterr().err == "error: /data/x.tif: has 3 bands, expected 2 (VV, VH)\n"
    assert run_entry_point(raising(TrainingStopped("stopped: 10 consecutive batches ..."))) == 1
    assert capsys.readouterr().err == "error: stopped: 10 consecutive batches ...\n"
    assert issubclass(DataError, UserError)


def test_a_command_is_quiet_and_importing_the_library_changes_no_log_level():
    # oneDNN is a speed setting the package makes on import (bench/README.md); the log level is the
    # host program's, set only around a command's action (which loads TensorFlow inside it).
    assert python(f"import sslrs_tf; {SHOW}") == ["None", "1"]
    assert python(f"from sslrs_tf.errors import run_entry_point; run_entry_point(lambda: None); {SHOW}") == ["2", "1"]
    assert python(f"import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'\nfrom sslrs_tf.errors import "
                  f"run_entry_point; run_entry_point(lambda: None); {SHOW}") == ["0", "1"]  # the user's choice wins

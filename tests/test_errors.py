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
    # host program's, set only while a command's action runs (which loads TensorFlow inside it), and taken
    # back after it: processes started later (a test's subprocesses) get their own start-up lines filtered.
    assert python(f"import sslrs_tf; {SHOW}") == ["None", "1"]
    during = "lambda: print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    assert python(f"import os\nfrom sslrs_tf.errors import run_entry_point; run_entry_point({during}); {SHOW}") == \
        ["2", "None", "1"]
    assert python(f"import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'\nfrom sslrs_tf.errors import "
                  f"run_entry_point; run_entry_point(lambda: None); {SHOW}") == ["0", "1"]  # the user's choice wins


def stderr_of(code, **env):
    """What `code` writes to standard error in a fresh interpreter (TensorFlow's log variables unset unless given)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, env={**clean, **env},
                          cwd=ROOT, check=True).stderr.decode()  # as bytes: a progress bar's \r stays itself


#: what TensorFlow's C++ code writes on a machine without a GPU (copied from this machine's output), written to
#: file descriptor 2 directly as C++ does, between lines of ours, a progress bar's partial lines and a cuInit
#: failure that is not harmless (no "Could not find cuda drivers" before it)
C_LINES = r'''
import os, sys
from sslrs_tf.errors import run_entry_point
def action():
    w = lambda text: os.write(2, text.encode())
    w("E0000 00:00:1.2 99 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error (303)\n")
    w("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    w("I0000 00:00:1795926161.658583   22173 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
      "GPU will not be used.\n")
    w("I0000 00:00:1795924584.475634   13945 port.cc:153] oneDNN custom operations are on. You may see ...\n")
    print("ours 1", file=sys.stderr, flush=True)
    w("\r 50%|#####     |")
    w("\r100%|##########|\n")
    w("I0000 00:00:1795925727.131107   17358 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n"
      "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
      "appropriate compiler flags.\n")
    w("E0000 00:00:1795926168.578124   22173 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n")
    w("E0000 00:00:1795924634.605716   13945 node_def_util.cc:682] NodeDef mentions attribute "
      "use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...>\n")
    w("W0000 00:00:1.5 99 something.cc:1] a warning of another kind\n")
    print("ours 2", file=sys.stderr)
sys.exit(run_entry_point(action))
'''


def test_a_command_drops_tensorflows_harmless_c_lines_and_passes_on_everything_else():
    assert stderr_of(C_LINES) == ("E0000 00:00:1.2 99 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
                                  "error (303)\nours 1\n\r 50%|#####     |\r100%|##########|\n"
                                  "W0000 00:00:1.5 99 something.cc:1] a warning of another kind\nours 2\n")
    # A user who sets the log level sees every line.
    everything = stderr_of(C_LINES, TF_CPP_MIN_LOG_LEVEL="0")
    assert everything.count("\n") == 12 and "cudart_stub.cc" in everything and "node_def_util.cc" in everything


def test_a_command_that_loads_tensorflow_and_runs_an_op_writes_nothing_to_standard_error():
    code = ("import sys\nfrom sslrs_tf.errors import run_entry_point\ndef action():\n    import tensorflow as tf\n"
            "    tf.config.list_physical_devices('GPU'); print(int(tf.constant(1) + 1))\n"
            "sys.exit(run_entry_point(action))")
    assert stderr_of(code) == ""

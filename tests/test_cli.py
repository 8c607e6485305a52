"""The command lines' shared behaviour: quiet TensorFlow in commands only, never in a host program.

train.py and evaluate.py themselves are tested end to end in tests/test_train.py and
tests/test_evaluate.py (in-process through their `main`, and as real processes).
"""

import os
import subprocess
import sys

from tests.helpers import ROOT

SHOW = "import os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"


def python(code):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          check=True).stdout.split()


def test_importing_the_library_leaves_the_hosts_logging_alone():
    # oneDNN is a speed setting (bench/README.md), the log level is the host program's.
    assert python(f"import sslrs_tf; {SHOW}") == ["None", "1"]


def test_commands_keep_tensorflows_start_up_logs_out_of_their_output():
    assert python(f"from sslrs_tf import cli; cli.quiet(); {SHOW}") == ["2", "1"]
    # `python -m sslrs_tf.<module>` imports the package while sys.argv[0] is "-m" (Python's documented
    # behaviour for -m): as a command, it is quiet.
    assert python(f"import sys; sys.argv = ['-m']; import sslrs_tf; {SHOW}") == ["2", "1"]

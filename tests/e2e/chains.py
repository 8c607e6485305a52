"""What the end-to-end tests share: the real entry points run as processes, one after the other."""

import subprocess
import sys

from tests.helpers import ROOT


def run(*args, cwd=ROOT, env=None, timeout=1200):
    """Runs a command to its end and checks that it exited with status 0; returns the finished process."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stderr[-3000:]}"
    return result


def train(config, run_dir, *overrides, **kwargs):
    """``python train.py --config configs/CONFIG run.dir=RUN_DIR OVERRIDES...`` (a shipped config by path)."""
    return run(sys.executable, ROOT / "train.py", "--config", ROOT / "configs" / config, f"run.dir={run_dir}",
               *overrides, **kwargs)


def evaluate(run_dir, **kwargs):
    """``python evaluate.py --run RUN_DIR``."""
    return run(sys.executable, ROOT / "evaluate.py", "--run", run_dir, **kwargs)

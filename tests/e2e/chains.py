"""What the end-to-end tests share: the real entry points run one after the other, as processes where the
process itself is under test (preemption, a killed or full-disk run, several workers, an installed package),
else through their ``main`` in this process: the same code from the argument list on, without a TensorFlow
start-up per run."""

import contextlib
import io
import subprocess

from tests.helpers import ROOT


def run(*args, cwd=ROOT, env=None, timeout=1200):
    """Runs a command to its end and checks that it exited with status 0; returns the finished process."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stderr[-3000:]}"
    return result


def main_output(main, *args):
    """Runs an entry point's ``main(argv)`` here and checks that it returned 0; returns what it printed."""
    import keras

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    keras.backend.clear_session()  # the next run builds its own models
    assert code == 0, f"{' '.join(map(str, args))}\n{err.getvalue()[-3000:]}"
    return out.getvalue()


def train(config, run_dir, *overrides):
    """``train.py --config configs/CONFIG run.dir=RUN_DIR OVERRIDES...`` (a shipped config by path), in this
    process; returns what it printed."""
    from train import main

    return main_output(main, "--config", ROOT / "configs" / config, f"run.dir={run_dir}", *overrides)


def evaluate(*args):
    """``evaluate.py ARGS...`` in this process; returns what it printed."""
    from evaluate import main

    return main_output(main, *args)

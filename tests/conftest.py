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
def interrupted_run(small_world, tmp_path_factory):
    """configs/tiny.yaml run by train.py as a real process and killed -9 once it has written
    checkpoint 2 (step 2 of 3 of the first epoch), by a watcher thread.

    pretrained_run asks for this fixture first, so the process runs beside the session's
    in-process tiny run, on the other core (the tests themselves use about one), instead of
    after it. tests/test_train.py resumes it with the same command and compares the weights
    with pretrained_run's. Join `thread` before using the directory; `killed` says whether the
    kill landed before the run could finish.
    """
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time
    from types import SimpleNamespace

    from tests.helpers import ROOT

    run_dir = tmp_path_factory.mktemp("interrupted") / "run"
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), f"run.dir={run_dir}",
           *small_world]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = SimpleNamespace(cmd=cmd, dir=run_dir, killed=False)

    def watch():
        index = run_dir / "checkpoints" / "checkpoint"
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if index.exists() and "ckpt-2" in index.read_text():
                os.kill(proc.pid, signal.SIGKILL)
                run.killed = True
                break
            time.sleep(0.02)
        proc.wait()

    run.thread = threading.Thread(target=watch, daemon=True)
    run.thread.start()
    yield run
    if proc.poll() is None:
        proc.kill()


class CommandChain:
    """Commands run one after the other as real processes by the session's :class:`Background` worker.

    `join()` waits for them and checks each exit status; the test that owns the chain then
    asserts on its files and outputs (``results[i].stdout``).
    """

    def __init__(self, commands, cwd, **attributes):
        import threading

        self.commands, self.cwd, self.results = commands, cwd, []
        self.done = threading.Event()
        self.__dict__.update(attributes)

    def join(self):
        """The finished processes (``subprocess.CompletedProcess``), each checked for exit status 0."""
        assert self.done.wait(timeout=1800), "the background chain did not finish"
        for cmd, result in zip(self.commands, self.results):
            assert result.returncode == 0, f"{' '.join(map(str, cmd))}\n{result.stderr[-3000:]}"
        assert len(self.results) == len(self.commands)
        return self.results


class Background:
    """One worker thread running command chains as real processes, in the order submitted.

    Long end-to-end chains (train.py, then evaluate.py) started before the first test run on
    the core the in-process tests leave idle (they trace on one thread): one worker, so they
    never take more than that core.
    """

    def __init__(self):
        import queue
        import threading

        self.queue, self.process, self.stopped = queue.Queue(), None, False
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def submit(self, chain):
        self.queue.put(chain)
        return chain

    def _work(self):
        import subprocess

        while (chain := self.queue.get()) is not None:
            for cmd in chain.commands:
                if self.stopped:
                    break
                self.process = subprocess.Popen(cmd, cwd=chain.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True)
                out, err = self.process.communicate()
                chain.results.append(subprocess.CompletedProcess(cmd, self.process.returncode, out, err))
                if self.process.returncode:
                    break
            chain.done.set()

    def stop(self):
        """Skips what has not started and kills the running process (the session is over)."""
        self.stopped = True
        self.queue.put(None)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self.thread.join()


@pytest.fixture(scope="session")
def background():
    """The session's :class:`Background` worker."""
    worker = Background()
    yield worker
    worker.stop()


def _train_command(config, run_dir, *overrides):
    import sys

    from tests.helpers import ROOT

    return [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / config), f"run.dir={run_dir}",
            *overrides]


def _short_chain(background, tmp_path_factory, name, config, world, *overrides, evaluate=False):
    """A shipped config run briefly (tests/helpers.py SHORT_RUN) by train.py, then optionally evaluate.py --run."""
    import sys

    from tests.helpers import ROOT, SHORT_RUN

    run = tmp_path_factory.mktemp(name) / "run"
    commands = [_train_command(config, run, *world, *SHORT_RUN, *overrides)]
    if evaluate:
        commands.append([sys.executable, str(ROOT / "evaluate.py"), "--run", str(run)])
    return background.submit(CommandChain(commands, ROOT, dir=run))


@pytest.fixture(scope="session")
def mma_run(background, small_world, tmp_path_factory):
    """configs/mma.yaml briefly, by train.py in the background (tests/methods/test_mma.py)."""
    return _short_chain(background, tmp_path_factory, "mma", "mma.yaml", small_world, "model.embedding_dim=32",
                        "train.validation_steps=1")


@pytest.fixture(scope="session")
def moco_run(background, small_world, tmp_path_factory):
    """configs/moco_sensor.yaml briefly, then evaluate.py --run, in the background (tests/methods/test_moco.py)."""
    return _short_chain(background, tmp_path_factory, "moco", "moco_sensor.yaml", small_world,
                        "model.backbone=resnet10", "model.queue_size=64", "train.validation_steps=1", evaluate=True)


@pytest.fixture(scope="session")
def simclr_run(background, small_world, tmp_path_factory):
    """configs/simclr_rgb.yaml briefly, by train.py in the background (tests/methods/test_simclr.py)."""
    return _short_chain(background, tmp_path_factory, "simclr", "simclr_rgb.yaml", small_world,
                        "model.backbone=resnet10", "data.validation_split=null")


@pytest.fixture(scope="session")
def swin_chain(background, small_world, tmp_path_factory):
    """The shipped Swin configs with the narrow test Swin at 32 px crops, as a user runs them:
    ``train.py`` Dual-Swin pre-training (eight steps, no warm-up), ``train.py`` SwinUNet from its
    frozen S2 encoder (one step), ``evaluate.py --run`` on it, in the background
    (tests/test_evaluate.py). Has ``pre`` and ``seg``, the two run directories."""
    import sys

    from tests.helpers import ROOT

    root = tmp_path_factory.mktemp("swin")
    pre, seg = root / "dual_swin", root / "seg"
    short = [*small_world, "model.backbone=swin_micro", "data.crop_size=32", "train.epochs=1",
             "train.steps_per_epoch=1", "train.batch_size=8"]
    return background.submit(CommandChain([
        _train_command("dual_swin.yaml", pre, *short, "train.steps_per_epoch=8", "train.log_every=1",
                       "optimizer.lr=1e-3", "optimizer.warmup_epochs=0", "data.validation_split=null"),
        _train_command("finetune_swin_segmentation.yaml", seg, *short, f"model.pretrained={pre}",
                       "model.inputs=only_s2", "model.freeze=true"),
        [sys.executable, str(ROOT / "evaluate.py"), "--run", str(seg)],
    ], ROOT, pre=pre, seg=seg))


#: tiny.yaml as the two-worker test trains it: two steps of SGD, a checkpoint after each. SGD,
#: not Adam: Adam's normalised update turns the summation-order noise of near-zero gradients
#: into whole ±lr steps; SGD's step is proportional to the gradient. Two steps: the noise grows
#: quickly from step to step (tiny ResNets, 32 px crops, batch 8: 3e-6 after two steps on the
#: quick-start world, 4e-4 after three).
MULTI_WORKER_RUN = ("optimizer.name=sgd", "optimizer.lr=0.01", "optimizer.weight_decay=0", "train.epochs=1",
                    "train.steps_per_epoch=2", "train.checkpoint_every=1")


@pytest.fixture(scope="session")
def two_worker_run(background, small_world, tmp_path_factory):
    """tests/training/two_workers.py (two train.py workers, worker 1 killed after checkpoint 1, both
    restarted), then the same config on one device, in the background (tests/training/test_multi_worker.py).
    Has ``dir`` and ``reference``, the two run directories."""
    import sys

    from tests.helpers import ROOT

    root = tmp_path_factory.mktemp("multi_worker")
    run, reference = root / "two_workers", root / "one_device"
    return background.submit(CommandChain([
        [sys.executable, "-m", "tests.training.two_workers", str(run), *small_world, *MULTI_WORKER_RUN],
        _train_command("tiny.yaml", reference, *small_world, *MULTI_WORKER_RUN),
    ], ROOT, dir=run, reference=reference))


#: the background chains, in the order the tests that join them run
_CHAINS = ("mma_run", "moco_run", "simclr_run", "swin_chain", "two_worker_run")


@pytest.fixture(scope="session", autouse=True)
def _background_chains(request):
    """Submits the background chains the collected tests need, before the first test runs."""
    for name in _CHAINS:
        if any(name in getattr(item, "fixturenames", ()) for item in request.session.items):
            request.getfixturevalue(name)


@pytest.fixture(scope="session")
def pretrained_run(small_world, interrupted_run, tmp_path_factory):
    """A finished tiny Dual-SimCLR run (configs/tiny.yaml) on the small world: its run directory.

    In-process (train.py's main, whose return value is the exit status): a subprocess would
    pay TensorFlow's start-up again. The same config as a killed process: `interrupted_run`.
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

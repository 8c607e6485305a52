"""The training driver behind ``train.py``: config in, trained and exported encoders out.

:func:`train` runs the steps below in order: the strategy first (multi-worker set-up must come
before anything starts TensorFlow's runtime), then :func:`plan` (batch and steps per epoch from
the split sizes), :func:`build` (the method and its optimizers under the strategy),
:func:`restore` (the last checkpoint, and where in the data it stopped), :func:`make_callbacks`,
:func:`fit` (the interrupted epoch, then the rest) and :func:`export` (encoders and card).
"""

import dataclasses
import shutil

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from sslrs_tf.data import service
from sslrs_tf.errors import TrainingStopped, UserError
from sslrs_tf.experiment import Experiment, apply_card
from sslrs_tf.training.callbacks import Checkpointer, InputImages, NonFiniteGuard
from sslrs_tf.training.optimizers import make_optimizer
from sslrs_tf.training.rundir import RunDir
from sslrs_tf.training.strategy import jit_compile, make_strategy, set_precision, worker_role


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a run steps through its data.

    Args:
        batch_size: the global batch (``train.batch_size``, or all labelled samples when fewer).
        steps: training steps per epoch.
        validation_steps: steps of the validation pass after each epoch (None: no validation).
    """

    batch_size: int
    steps: int
    validation_steps: int = None


def plan(experiment):
    """The :class:`Plan` of a run: its batch, steps per epoch and validation steps, checked against the
    sizes of its splits."""
    config = experiment.config
    data, batch_size = config.data, config.train.batch_size
    examples = experiment.training_size(data.split, "config: data.split")
    validation = experiment.split_size(data.validation_split, "config: data.validation_split") \
        if data.validation_split else None
    if data.label and examples < batch_size:
        # A small label fraction can hold fewer samples than a batch: train on all of them at once.
        print(f"note: {examples} labelled samples < train.batch_size {batch_size}; batches of {examples}")
        batch_size = examples
    per_pass = examples // batch_size
    if per_pass == 0:
        raise UserError(f"config: train.batch_size {batch_size} is larger than the {examples} samples of {data.split}")
    steps = config.train.steps_per_epoch or per_pass
    if steps > per_pass:
        raise UserError(f"config: train.steps_per_epoch {steps} is more than one pass over the data ({per_pass} batches)")
    validation_steps = None
    if validation is not None:
        batches = -(-validation // batch_size)
        validation_steps = min(batches, config.train.validation_steps or batches)
    return Plan(batch_size, steps, validation_steps)


def build(experiment, run_plan, strategy):
    """The method built under `strategy`, compiled with its optimizers, every variable created (so that a
    checkpoint can be restored into it); and the first training batch's inputs."""
    config = experiment.config
    sample = next(iter(experiment.dataset(config.data.split, training=True, batch_size=run_plan.batch_size).take(1)))
    with strategy.scope():
        model = experiment.build_method(sample)
        optimizer, model.l2_penalty = make_optimizer(config.optimizer, run_plan.steps, config.train.epochs)
        if config.optimizer.encoder_lr is not None and model.encoder_variables():
            model.encoder_optimizer, _ = make_optimizer(config.optimizer, run_plan.steps, config.train.epochs,
                                                        lr=config.optimizer.encoder_lr)
        model.compile(optimizer=optimizer,
                      jit_compile=jit_compile(config.train.jit_compile, strategy, config.train.deterministic))
    return model, sample[0] if isinstance(sample, tuple) else sample


def restore(model, run, own, config, run_plan):
    """Restores the latest checkpoint of `run` into `model`.

    Args:
        own: the run directory this process writes its checkpoints to (`run`, or beside it for a
            multi-worker run's other workers).

    Returns:
        ``(checkpointer, epoch, step)``: the callback that keeps checkpointing, and the epoch and
        batch to continue from (0, 0 for a new run).
    """
    checkpointer = Checkpointer(run.checkpoints, config.train.checkpoint_every, save_directory=own.checkpoints)
    epoch, step = checkpointer.restore(model)
    for path, reason in checkpointer.passed_over:
        print(f"checkpoint {path} cannot be read ({reason}): passed over for the one before it")
    if step >= run_plan.steps:  # killed between the last batch's checkpoint and the epoch-end one
        epoch, step = epoch + 1, 0
    checkpointer.start_step = step
    if epoch or step:
        where = (f"epoch {epoch + 1} of {config.train.epochs}, batch {step + 1} of {run_plan.steps}"
                 if epoch < config.train.epochs else "all epochs done, exporting")
        print(f"resuming from {checkpointer.restored_from}: {where}")
    return checkpointer, epoch, step


def make_callbacks(config, run, checkpointer, inputs, bands, chief):
    """The run's callbacks: checkpoints, the non-finite guard, and on the chief TensorBoard with a few
    input patches."""
    guard = NonFiniteGuard(config.train.max_skipped)
    callbacks = [checkpointer, guard]
    if chief:
        callbacks += [keras.callbacks.TensorBoard(log_dir=str(run.tensorboard), update_freq=config.train.log_every),
                      InputImages(run.tensorboard, inputs, bands["s2"])]
    return callbacks


def fit(model, experiment, run_plan, epoch, step, callbacks, verbose):
    """Trains from `epoch`, `step` to the last epoch: the interrupted epoch from its next batch, then the
    rest; each batch is the one an uninterrupted run would see. Returns the last ``History.history``
    (empty when nothing was left to train)."""
    config = experiment.config
    guard = next(c for c in callbacks if isinstance(c, NonFiniteGuard))

    def training_data(start_epoch, start_step=0):
        data = experiment.dataset(config.data.split, training=True, batch_size=run_plan.batch_size,
                                  start_epoch=start_epoch, start_step=start_step, steps_per_epoch=run_plan.steps)
        if config.data.service:
            data = service.distribute(data, config.data.service)
        return _shard_by_data(data)

    validation = None
    if config.data.validation_split:
        validation = _shard_by_data(experiment.dataset(config.data.validation_split, training=False,
                                                       batch_size=run_plan.batch_size))
    options = dict(callbacks=callbacks, verbose=verbose, validation_data=validation,
                   validation_steps=run_plan.validation_steps, shuffle=False)  # the pipeline shuffles
    history = {}
    if epoch < config.train.epochs and step:
        h = model.fit(training_data(epoch, step), initial_epoch=epoch, epochs=epoch + 1,
                      steps_per_epoch=run_plan.steps - step, **options)
        history, epoch = h.history, epoch + 1
    if epoch < config.train.epochs and not guard.stopped:
        h = model.fit(training_data(epoch), initial_epoch=epoch, epochs=config.train.epochs,
                      steps_per_epoch=run_plan.steps, **options)
        history = h.history
    if guard.stopped:
        raise TrainingStopped(
            f"stopped: {guard.consecutive} consecutive batches had a non-finite loss and were skipped "
            f"({guard.total} in all); lower optimizer.lr or check the data")
    return history


def export(model, own, config, history, chief, class_names=None):
    """Exports the encoders and the card into `own` and returns the card; a non-chief worker's
    directory is removed afterwards. `class_names`: a downstream run's classes, in code order."""
    final = {k: v[-1] for k, v in history.items() if v and np.isfinite(v[-1])}
    card = own.export_encoders(model, config, final, class_names)
    if not chief:
        shutil.rmtree(own.path, ignore_errors=True)
        try:
            own.path.parent.rmdir()  # RUN_DIR/workers, once the last worker has left it
        except OSError:
            pass
    return card


def train(config, verbose="auto", explicit=(), preemption=False):
    """Trains the configured method, resuming from the run directory if it holds a checkpoint.

    A downstream run from ``model.pretrained`` first takes from the pre-trained card what it
    fixes (:func:`sslrs_tf.experiment.apply_card`; `explicit`: the keys set on the command line,
    which the card must not contradict), and prints one line saying what that was.

    With `preemption` (the command lines set it), SIGTERM during training saves a checkpoint at
    the next batch end and raises :class:`~sslrs_tf.errors.Preempted`; the same config resumes
    from there. A library call leaves the host program's SIGTERM alone by default.

    Returns:
        The exported card (a dict): bands, normalisation, final metrics, ...

    Raises:
        UserError: a config or data problem (one line).
        TrainingStopped: the loss stayed non-finite for ``train.max_skipped`` batches.
        Preempted: SIGTERM (with `preemption`).
    """
    if config.data.service:
        check_service(config)
    # First: a multi-worker strategy configures TF's collective ops, which only works before
    # anything else has initialised TensorFlow's runtime.
    strategy = make_strategy(config.train.distribution)
    config, card_line = apply_card(config, explicit)
    if card_line:
        print(card_line)
    experiment = Experiment(config)
    run = RunDir(config.run.dir)
    run.start(config)
    # Set both ways: an earlier run in this process may have turned it on (TF exports only the switch on).
    tf_config.enable_op_determinism() if config.train.deterministic else tf_config.disable_op_determinism()
    keras.utils.set_random_seed(config.train.seed)
    set_precision(config.train.mixed_precision)
    run_plan = plan(experiment)
    model, inputs = build(experiment, run_plan, strategy)
    chief, worker = worker_role(strategy)
    # A multi-worker run's other workers write beside the run, and remove it at the end.
    own = run if chief else RunDir(run.path / "workers" / worker)
    checkpointer, epoch, step = restore(model, run, own, config, run_plan)
    callbacks = make_callbacks(config, run, checkpointer, inputs, experiment.bands, chief)
    if preemption:
        checkpointer.watch_preemption(
            getattr(strategy, "cluster_resolver", None),
            lambda e, s: f"epoch {e + 1} of {config.train.epochs}, {s} of its {run_plan.steps} batches done")
    try:
        history = fit(model, experiment, run_plan, epoch, step, callbacks, verbose)
    finally:
        checkpointer.close()
    # The card records the batch the run trained with.
    trained = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=run_plan.batch_size))
    return export(model, own, trained, history, chief, experiment.class_names if config.data.label else None)


def check_service(config):
    """Refuses ``data.service`` where it is not supported: a malformed address, or more than one trainer process
    (each would get other batches from the workers than its peers, while the run's global batches are
    assembled from every worker's share of the same batch: :func:`_shard_by_data`)."""
    service.address(config.data.service)
    if config.train.distribution in ("multi_worker", "tpu"):
        raise UserError("data.service feeds one trainer process (train.distribution auto, one_device or mirrored). "
                        f"Received: train.distribution={config.train.distribution}")


def _shard_by_data(dataset):
    """Multi-worker input sharding by data, not by file: every worker reads the whole split and
    keeps its share of each global batch (tf.distribute splits a global batch into per-replica
    batches, then hands worker i every i-th of them). The global batches are then those of a
    one-device run, so the run's data, its resume position and its result do not depend on the
    worker count; the price is that each worker reads every record (docs/distribution.md).
    No effect on one machine."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)

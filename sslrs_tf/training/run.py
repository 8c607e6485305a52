"""The training driver behind ``train.py``: config in, trained and exported encoders out."""

import dataclasses
import shutil

import keras
import numpy as np
import tensorflow as tf

from sslrs_tf.data.bands import resolve_bands
from sslrs_tf.data.build import prepare_world
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.data.pipeline import kept_count, load_builder, make_dataset, split_size
from sslrs_tf.errors import TrainingStopped, UserError  # noqa: F401  (TrainingStopped: re-exported)
from sslrs_tf.methods import get_method
from sslrs_tf.training.callbacks import Checkpointer, InputImages, NonFiniteGuard
from sslrs_tf.training.optimizers import make_optimizer
from sslrs_tf.training.rundir import RunDir
from sslrs_tf.training.strategy import make_strategy, set_precision, worker_role


def resolve_config_bands(config):
    """``{"s1": [...], "s2": [...]}``: the band lists of ``data.s1_bands``/``data.s2_bands``."""
    try:
        bands = {"s1": resolve_bands("s1", config.data.s1_bands), "s2": resolve_bands("s2", config.data.s2_bands)}
    except ValueError as err:
        raise UserError(f"config: data bands: {err}") from None
    norm = Normalization(config.data.normalization)
    for modality, names in bands.items():
        try:
            norm.describe(modality, names)
        except ValueError as err:
            raise UserError(f"config: data.normalization {norm.method} with data.{modality}_bands: {err}") from None
    return bands


def builder_for(config):
    """The TFDS builder of ``data`` (the synthetic world is generated and built on first use)."""
    data = config.data
    if data.source == "synthetic":
        if data.dataset not in ("sen12ms", "dfc2020"):
            raise UserError(f"config: data.source synthetic has sen12ms and dfc2020, not data.dataset {data.dataset}")
        syn = data.synthetic
        params = {"patches": syn.patches, "size": syn.size, "seed": syn.seed,
                  "dfc_validation": syn.dfc_validation, "dfc_test": syn.dfc_test}
        return prepare_world(syn.dir, data.data_dir, params)[data.dataset]
    return load_builder(data.dataset, data.data_dir, data.config)


def train(config, verbose="auto"):
    """Trains the configured method, resuming from the run directory if it holds a checkpoint.

    Returns:
        The exported card (a dict): bands, normalisation, final metrics, ...

    Raises:
        UserError: a config or data problem (one line).
        TrainingStopped: the loss stayed non-finite for ``train.max_skipped`` batches.
    """
    # First: a multi-worker strategy configures TF's collective ops, which only works before
    # anything else has initialised TensorFlow's runtime.
    strategy = make_strategy(config.train.distribution)
    run = RunDir(config.run.dir)
    run.start(config)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(config.train.seed)
    set_precision(config.train.mixed_precision)
    bands = resolve_config_bands(config)
    builder = builder_for(config)
    sizes = {}
    for key in ("split", "validation_split"):
        split = getattr(config.data, key)
        if split:
            try:
                sizes[split] = split_size(builder, split)
            except UserError as err:
                raise UserError(f"config: data.{key}: {err}") from None
    examples = sizes[config.data.split]
    if config.data.label and config.data.label_fraction < 1:
        examples = kept_count(examples, config.data.label_fraction)
    if config.data.label and examples < config.train.batch_size:
        # A small label fraction can hold fewer samples than a batch: train on all of them at once.
        print(f"note: {examples} labelled samples < train.batch_size {config.train.batch_size}; batches of {examples}")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=examples))
    per_pass = examples // config.train.batch_size
    if per_pass == 0:
        raise UserError(f"config: train.batch_size {config.train.batch_size} is larger than the {examples} samples of {config.data.split}")
    steps = config.train.steps_per_epoch or per_pass
    if steps > per_pass:
        raise UserError(f"config: train.steps_per_epoch {steps} is more than one pass over the data ({per_pass} batches)")

    method = get_method(config.model.method)

    def data(split, start_epoch=0, start_step=0, training=True):
        dataset = make_dataset(builder, split, modalities=method.input_modalities(config), bands=bands,
                               missing_bands=config.data.missing_bands, normalization=config.data.normalization,
                               crop_size=config.data.crop_size, batch_size=config.train.batch_size,
                               training=training, seed=config.train.seed, shuffle_buffer=config.data.shuffle_buffer,
                               start_epoch=start_epoch, start_step=start_step, label=config.data.label,
                               label_fraction=config.data.label_fraction if training else 1.0,
                               steps_per_epoch=steps if training else None)
        return _shard_by_data(dataset)

    sample = next(iter(data(config.data.split).take(1)))
    inputs = sample[0] if isinstance(sample, tuple) else sample
    with strategy.scope():
        model = method.from_run_config(config, bands)
        optimizer, model.l2_penalty = make_optimizer(config.optimizer, steps, config.train.epochs)
        if config.optimizer.encoder_lr is not None and model.encoder_variables():
            model.encoder_optimizer, _ = make_optimizer(config.optimizer, steps, config.train.epochs,
                                                        lr=config.optimizer.encoder_lr)
        model.compile(optimizer=optimizer, jit_compile=False)  # XLA measured 1.5-2x slower on CPU
        # Create every variable now, so that a checkpoint can be restored into them.
        model({k: v[:1] for k, v in inputs.items()})
        model.build_optimizers()
    chief, worker = worker_role(strategy)
    # A multi-worker run's other workers write beside the run, and remove it at the end.
    own = run if chief else RunDir(run.path / "workers" / worker)
    checkpointer = Checkpointer(run.checkpoints, config.train.checkpoint_every, save_directory=own.checkpoints)
    epoch, step = checkpointer.restore(model)
    if step >= steps:  # killed between the last batch's checkpoint and the epoch-end one
        epoch, step = epoch + 1, 0
    checkpointer.start_step = step
    if epoch or step:
        where = (f"epoch {epoch + 1} of {config.train.epochs}, batch {step + 1} of {steps}"
                 if epoch < config.train.epochs else "all epochs done, exporting")
        print(f"resuming from {tf.train.latest_checkpoint(str(run.checkpoints))}: {where}")
    guard = NonFiniteGuard(config.train.max_skipped)
    callbacks = [checkpointer, guard]
    if chief:
        callbacks += [keras.callbacks.TensorBoard(log_dir=str(run.tensorboard), update_freq=config.train.log_every),
                      InputImages(run.tensorboard, inputs, bands["s2"])]
    validation, validation_steps = None, None
    if config.data.validation_split:
        validation = data(config.data.validation_split, training=False)
        batches = -(-sizes[config.data.validation_split] // config.train.batch_size)
        validation_steps = min(batches, config.train.validation_steps or batches)
    fit = dict(callbacks=callbacks, verbose=verbose, validation_data=validation,
               validation_steps=validation_steps, shuffle=False)  # the pipeline shuffles
    history = {}
    if epoch < config.train.epochs and step:
        # Finish the interrupted epoch from the next batch, then the remaining epochs.
        h = model.fit(data(config.data.split, epoch, step), initial_epoch=epoch, epochs=epoch + 1,
                      steps_per_epoch=steps - step, **fit)
        history, epoch = h.history, epoch + 1
    if epoch < config.train.epochs and not guard.stopped:
        h = model.fit(data(config.data.split, epoch), initial_epoch=epoch, epochs=config.train.epochs,
                      steps_per_epoch=steps, **fit)
        history = h.history
    if guard.stopped:
        raise TrainingStopped(
            f"stopped: {guard.consecutive} consecutive batches had a non-finite loss and were skipped "
            f"({guard.total} in all); lower optimizer.lr or check the data")
    final = {k: v[-1] for k, v in history.items() if v and np.isfinite(v[-1])}
    card = own.export_encoders(model, config, final)
    if not chief:
        shutil.rmtree(own.path, ignore_errors=True)
        try:
            own.path.parent.rmdir()  # RUN_DIR/workers, once the last worker has left it
        except OSError:
            pass
    return card


def _shard_by_data(dataset):
    """Multi-worker input sharding by data, not by file: every worker reads the whole split and
    keeps its share of each global batch (tf.distribute splits a global batch into per-replica
    batches, then hands worker i every i-th of them). The global batches are then those of a
    one-device run, so the run's data, its resume position and its result do not depend on the
    worker count; the price is that each worker reads every record (see README, multi-worker).
    No effect on one machine."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)

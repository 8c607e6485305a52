"""What every trainable method shares: the distributed training step, the non-finite guard, metrics.

A method subclasses :class:`Method`, builds its layers, and implements
:meth:`Method.loss_and_values`, which returns this replica's loss and metric
values for a batch. The base class:

* scales the loss for the replica count (Keras' optimizer sums the replicas'
  gradients) and for mixed precision (``optimizer.scale_loss``), inside the tape;
* applies the gradients only when the loss, the gradients and the updated
  BatchNorm statistics are finite on every replica. A skipped batch changes
  nothing: not the weights, not the optimizer state, not BatchNorm's moving
  statistics (which the forward pass already updated, so they are put back).
  Skips are counted in the ``skipped_batches`` metric;
* lets a method train groups of variables with their own optimizers
  (:meth:`Method.optimizer_groups`; fine-tuning uses one learning rate for the
  encoders and another for the head — Keras 3 has no per-variable learning rate,
  and Adam ignores gradient scaling, so two optimizers it is);
* reports every value through ``keras.metrics`` objects, which aggregate over
  replicas (a custom step under MirroredStrategy otherwise returns only the
  first replica's values).
"""

import dataclasses

import keras
import tensorflow as tf

from sslrs_tf.data.labels import NUM_CLASSES
from sslrs_tf.losses.contrastive import embedding_spread, l2_normalize, retrieval_accuracy
from sslrs_tf.models.encoders import ENCODERS


def gather(x):
    """This replica's `x`, the global batch of all replicas' `x`, and this replica's offset in it.

    In float32: the losses compute in it anyway, and collectives on CPU refuse bfloat16.
    """
    x = tf.cast(x, "float32")
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x, x, 0
    offset = tf.cast(ctx.replica_id_in_sync_group, "int32") * tf.shape(x)[0]
    return x, ctx.all_gather(x, axis=0), offset


@dataclasses.dataclass(frozen=True)
class MethodInputs:
    """What a method is built for besides its own settings: the data it is fed.

    :mod:`sslrs_tf.experiment` resolves these from the whole run config (bands and crop from
    ``data``, label kind and classes from the dataset); a method's :meth:`Method.from_model_config`
    combines them with the ``model`` section.

    Args:
        bands: ``{"s1": (names), "s2": (names)}``: each sensor's channels, in order.
        image_size: the side of the input a Swin encoder is built for (the crop); None for
            other encoders, which take any size.
        label: the downstream label kind (``"single"``, ``"multi"``, ``"segmentation"``), or None.
        num_classes: number of classes of the labels.
    """

    bands: dict
    image_size: int = None
    label: str = None
    num_classes: int = NUM_CLASSES

    def channels(self, modality):
        """Input channels of `modality`'s encoder."""
        return len(self.bands[modality])


def _step_logs(logs):
    """A step's logs as Keras' fit can reduce them under the current strategy.

    Keras 3.15 reduces the logs of a MultiWorkerMirroredStrategy step with a mean along axis
    0, which scalars lack (tensorflow#72388): there, each log becomes a 1-vector, and the
    reduction is the mean over all replicas that MirroredStrategy's logs get.
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {k: tf.reshape(v, [1]) for k, v in logs.items()}
    return logs


class Method(keras.Model):
    """Base class of everything ``train.py`` trains (see the module docstring).

    Subclasses implement ``loss_and_values(data, training)`` returning
    ``(loss, {metric name: value})`` for the batch `data` as the dataset yields it,
    ``encoders()`` returning ``{modality: keras.Model}``, and the classmethod
    ``from_model_config(model, inputs)``, which builds the method from a run config's
    ``model`` section and the :class:`MethodInputs` the experiment resolved. The class
    attributes below say what the method accepts; :mod:`sslrs_tf.experiment` checks a
    config against them before anything is built.
    """

    #: names of the per-batch values `loss_and_values` reports besides the loss
    METRICS = ()
    #: the ``model.backbone`` values it is built with
    BACKBONES = ENCODERS
    #: the ``data.label`` kinds it trains on (None: unlabelled pre-training)
    LABELS = (None,)
    #: channels a sensor's input must have where the method fixes them, e.g. ``{"s2": 3}``
    INPUT_CHANNELS = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: L2 penalty added to the gradients (PyTorch-style Adam/SGD weight decay; see training.optimizers)
        self.l2_penalty = 0.0
        #: a second optimizer for the encoders' variables, when they train at their own learning rate
        self.encoder_optimizer = None
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.value_trackers = {name: keras.metrics.Mean(name=name) for name in self.METRICS}
        self.skipped_tracker = keras.metrics.Sum(name="skipped_batches")

    @property
    def metrics(self):
        return [self.loss_tracker, *self.value_trackers.values(), *self.streaming_metrics(), self.skipped_tracker]

    def streaming_metrics(self):
        """Metrics a subclass updates itself inside `loss_and_values` (e.g. a confusion matrix)."""
        return []

    def loss_and_values(self, data, training):
        """This replica's loss and metric values for one batch."""
        raise NotImplementedError

    def encoders(self):
        """The encoders to export, by modality."""
        raise NotImplementedError

    @classmethod
    def from_model_config(cls, model, inputs):
        """The method a run config's ``model`` section (:class:`~sslrs_tf.config.ModelConfig`) describes,
        for the data `inputs` (:class:`MethodInputs`)."""
        raise NotImplementedError

    @classmethod
    def config_problem(cls, model):
        """What is wrong with a run config's ``model`` section for this method, in one line naming the keys,
        or None (checked by :func:`sslrs_tf.experiment.check_config` before anything is built)."""
        return None

    @classmethod
    def input_modalities(cls, model):
        """The sensors the method reads with a run config's ``model`` section (only these are decoded)."""
        return ("s1", "s2")

    @classmethod
    def crop_divisor(cls, backbone):
        """The number the input side must be a multiple of with `backbone` (1: any side)."""
        return 1

    def encoder_variables(self):
        """The trainable variables `encoder_optimizer` updates (default: none)."""
        return []

    def optimizer_groups(self):
        """``[(optimizer, variables), ...]``: which optimizer updates which trainable variables."""
        owned = {id(v) for v in self.encoder_variables()} if self.encoder_optimizer is not None else set()
        rest = [v for v in self.trainable_variables if id(v) not in owned]
        groups = [(self.optimizer, rest)]
        if owned:
            groups.append((self.encoder_optimizer, [v for v in self.trainable_variables if id(v) in owned]))
        return groups

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras 3.15's fit draws a batch and reduces it across replicas (to build layers and
        # compiled metrics symbolically) before it checks whether anything is unbuilt; under
        # MultiWorkerMirroredStrategy that reduce fails for dict inputs. A method is built before
        # fit (train.py calls it once and builds its optimizers), so there is nothing to build.
        if all(layer.built for layer in self._flatten_layers()) and self._compile_metrics is None \
                and self._compile_loss is None:
            return
        super()._maybe_symbolic_build(iterator, data_batch)

    def build_optimizers(self):
        """Creates the variables of every optimizer not built yet (needed before a checkpoint can be restored)."""
        for optimizer, variables in self.optimizer_groups():
            if not optimizer.built:
                optimizer.build(variables)

    def compile(self, *args, **kwargs):
        """Keras' compile; then builds the optimizers (set ``encoder_optimizer`` before).

        Every method creates its variables in ``__init__``. Optimizer variables created
        inside the first ``train_step`` instead make ``tf.function`` trace the step twice
        (once to create them, once more without): for a Swin that is 20 s more.
        """
        super().compile(*args, **kwargs)
        scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
        if scaled and self.encoder_optimizer is not None \
                and not isinstance(self.encoder_optimizer, keras.optimizers.LossScaleOptimizer):
            # Under mixed_float16 Keras wraps `optimizer` in a LossScaleOptimizer; the encoders' optimizer gets
            # one with the same schedule, and train_step keeps the two scales equal (:meth:`_skip_together`).
            self.encoder_optimizer = keras.optimizers.LossScaleOptimizer(
                self.encoder_optimizer, initial_scale=self.optimizer.initial_scale,
                dynamic_growth_steps=self.optimizer.dynamic_growth_steps)
        if self.optimizer is not None:
            self.build_optimizers()

    def _record(self, loss, values, finite):
        # A skipped batch does not enter the averages (weight 0, and 0 instead of NaN).
        weight = tf.cast(finite, "float32")
        self.loss_tracker.update_state(tf.where(finite, loss, 0.0), sample_weight=weight)
        for name, value in values.items():
            self.value_trackers[name].update_state(tf.where(finite, value, 0.0), sample_weight=weight)

    def train_step(self, data):
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        saved = [tf.identity(v) for v in self.non_trainable_variables]
        groups = self.optimizer_groups()
        with tf.GradientTape() as tape:
            loss, values, aux = self.training_forward(data)
            scaled = self.optimizer.scale_loss(tf.cast(loss, "float32") / replicas)
        variables = [v for _, group in groups for v in group]
        grads = tape.gradient(scaled, variables)
        if self.l2_penalty:
            # Scaled like the loss, so that the optimizer's unscaling and replica sum restore l2 * w.
            factor = self.optimizer.scale_loss(tf.constant(self.l2_penalty / replicas, "float32"))
            grads = [g + tf.cast(factor, g.dtype) * tf.cast(v, g.dtype) for g, v in zip(grads, variables)]
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            grads = self._skip_together(ctx, grads, groups)
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(self._all_finite(loss, grads), "float32"))
        finite = tf.equal(bad, 0.0)
        updates, start = [], 0
        for optimizer, group in groups:
            updates.append((optimizer, grads[start:start + len(group)], group))
            start += len(group)
        self._apply_or_restore(updates, finite, saved, aux)
        self._record(loss, values, finite)
        # Each replica adds 1/replicas: the aggregated sum counts a skipped batch once.
        self.skipped_tracker.update_state((1.0 - tf.cast(finite, "float32")) / replicas)
        logs = {m.name: m.result() for m in self.metrics}
        logs["learning_rate"] = tf.cast(self.optimizer.learning_rate, "float32")
        if self.encoder_optimizer is not None:
            logs["encoder_learning_rate"] = tf.cast(self.encoder_optimizer.learning_rate, "float32")
        return _step_logs(logs)

    @staticmethod
    def _skip_together(ctx, grads, groups):
        """Under loss scaling: when any gradient of any replica is not finite, the first gradient of every
        optimizer's group becomes NaN on every replica.

        Each LossScaleOptimizer decides from the gradients it is given (Keras takes the first replica's)
        whether to skip the step and halve its scale. So all of them skip the same steps and their
        scales stay equal, as the one scaled loss needs; and an overflow on another replica is not missed.
        """
        present = [g for g in grads if g is not None]
        finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g)) for g in present]))
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, "float32"))
        poison = tf.where(tf.equal(bad, 0.0), 0.0, float("nan"))
        grads, start = list(grads), 0
        for _, group in groups:
            first = next((i for i in range(start, start + len(group)) if grads[i] is not None), None)
            if first is not None:
                grads[first] = grads[first] + tf.cast(poison, grads[first].dtype)
            start += len(group)
        return grads

    def _all_finite(self, loss, grads):
        """Whether the loss, the gradients and the state the forward pass updated are finite.

        The loss alone is not enough: oneDNN's ReLU and max-pool turn NaN into a
        number, so a NaN pixel can leave the loss finite while BatchNorm's moving
        statistics and some gradients are already NaN. Under loss scaling,
        non-finite gradients are the LossScaleOptimizer's business (it skips the
        step and lowers the scale); counting them here would stop that.
        """
        checks = [tf.reduce_all(tf.math.is_finite(loss))]
        checks += [tf.reduce_all(tf.math.is_finite(v)) for v in self.non_trainable_variables if "float" in v.dtype]
        if not isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            checks += [tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None]
        return tf.reduce_all(tf.stack(checks))

    def training_forward(self, data):
        """``(loss, values, aux)`` of a training batch; `aux` is handed to :meth:`after_update` (default None)."""
        loss, values = self.loss_and_values(data, training=True)
        return loss, values, None

    def after_update(self, aux):
        """State a method changes after the optimizers' update, only when the batch was finite (MoCo's
        key encoder and queue). Runs in replica context on every replica, with that replica's `aux`."""

    def _apply_or_restore(self, updates, finite, saved, aux=None):
        """Applies each ``(optimizer, grads, variables)`` of `updates` and then :meth:`after_update` if
        `finite` (the same on every replica), else puts the non-trainable state back."""

        def apply(updates, aux):
            for optimizer, grads, variables in updates:
                optimizer.apply(grads, variables)
            self.after_update(aux)

        def restore(values):
            for variable, value in zip(self.non_trainable_variables, values):
                variable.assign(value)

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, lambda: apply(updates, aux) or tf.no_op(), lambda: restore(saved) or tf.no_op())
            return

        # MirroredStrategy: optimizer.apply calls merge_call, which a cond branch in a
        # replica context must not do. Decide in the cross-replica context instead
        # (the pattern of Keras' LossScaleOptimizer).
        def cross_replica(strategy, grads, finite, saved, aux):
            decided = strategy.experimental_local_results(finite)[0]

            def apply_everywhere():
                def replica_apply(grads, aux):
                    apply([(o, g, v) for (o, _, v), g in zip(updates, grads)], aux)
                strategy.extended.call_for_each_replica(replica_apply, args=(grads, aux))

            def skip():
                strategy.extended.call_for_each_replica(restore, args=(saved,))

            tf.cond(decided, apply_everywhere, skip)

        grads = [g for _, g, _ in updates]
        tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite, saved, aux))

    def test_step(self, data):
        loss, values = self.loss_and_values(data, training=False)
        self._record(loss, values, tf.math.is_finite(loss))
        return _step_logs({m.name: m.result() for m in self.metrics if m is not self.skipped_tracker})


class ContrastiveMethod(Method):
    """Base of the pre-training methods: batches are unlabelled, `contrastive_step` gets the inputs."""

    def augmentation_seeds(self, n):
        """`n` stateless seeds for this step's random views: from the optimizer's step and the replica,
        so a resumed run draws what an uninterrupted one would, and each replica draws its own."""
        ctx = tf.distribute.get_replica_context()
        replica = tf.cast(ctx.replica_id_in_sync_group if ctx is not None else 0, "int64")
        seed = tf.stack([tf.cast(self.optimizer.iterations, "int64"), replica])
        return tf.unstack(tf.random.experimental.stateless_split(seed, n), axis=0)

    def contrastive_step(self, inputs, training):
        """This replica's loss and metric values for a batch of inputs."""
        raise NotImplementedError

    def loss_and_values(self, data, training):
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # pre-training has no labels
        return self.contrastive_step(inputs, training)

    def embed(self, inputs):
        """Unit-norm embeddings ``{"s1": [B, d], "s2": [B, d]}`` whose dot products are the method's similarity
        (for retrieval; default: the L2-normalised outputs of ``call``)."""
        return {m: l2_normalize(z) for m, z in self(inputs, training=False).items()}


class SensorPairMethod(ContrastiveMethod):
    """Pre-training whose positive pair is the co-located S1/S2 patch, one encoder per sensor.

    Subclasses build ``encoder_s1`` and ``encoder_s2``, make ``call`` return one
    embedding per sensor (``{"s1": [B, d], "s2": [B, d]}``) and give the loss of the
    pairs in :meth:`pair_loss`; gathering the global batch and the retrieval metrics
    are shared.
    """

    METRICS = ("top1", "top5", "spread")

    def pair_loss(self, a, b, all_a, all_b, offset):
        """This replica's loss for its embeddings `a` (S1), `b` (S2) against the global batch."""
        raise NotImplementedError

    def contrastive_step(self, inputs, training):
        z = self(inputs, training=training)
        a, all_a, offset = gather(z["s1"])
        b, all_b, _ = gather(z["s2"])
        return self.pair_loss(a, b, all_a, all_b, offset), pair_metrics(a, b, all_a, all_b, offset)

    def encoders(self):
        return {"s1": self.encoder_s1, "s2": self.encoder_s2}


def pair_metrics(a, b, all_a, all_b, offset):
    """Cross-modal retrieval top-1/top-5 and the embedding spread of a batch of pairs."""
    return {
        "top1": retrieval_accuracy(a, b, all_a, all_b, offset, k=1),
        "top5": retrieval_accuracy(a, b, all_a, all_b, offset, k=5),
        "spread": (embedding_spread(all_a) + embedding_spread(all_b)) / 2.0,
    }

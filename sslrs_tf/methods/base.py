"""What every contrastive method shares: the distributed training step, the non-finite guard, metrics.

A method subclasses :class:`ContrastiveMethod`, builds its encoders and heads,
and implements :meth:`ContrastiveMethod.contrastive_step`, which returns this
replica's loss and metric values for a batch. The base class:

* scales the loss for the replica count (Keras' optimizer sums the replicas'
  gradients) and for mixed precision (``optimizer.scale_loss``), inside the tape;
* applies the gradients only when the loss, the gradients and the updated
  BatchNorm statistics are finite on every replica. A skipped batch changes
  nothing: not the weights, not the optimizer state, not BatchNorm's moving
  statistics (which the forward pass already updated, so they are put back).
  Skips are counted in the ``skipped_batches`` metric;
* reports every value through ``keras.metrics`` objects, which aggregate over
  replicas (a custom step under MirroredStrategy otherwise returns only the
  first replica's values).
"""

import keras
import tensorflow as tf

from sslrs_tf.losses.contrastive import embedding_spread, retrieval_accuracy


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


class ContrastiveMethod(keras.Model):
    """Base class of the pre-training methods (see the module docstring).

    Subclasses implement ``contrastive_step(inputs, training)`` returning
    ``(loss, {metric name: value})``, and ``encoders()`` returning
    ``{modality: keras.Model}`` for export.
    """

    #: names of the metrics `contrastive_step` reports besides the loss
    METRICS = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        #: L2 penalty added to the gradients (PyTorch-style Adam/SGD weight decay; see training.optimizers)
        self.l2_penalty = 0.0
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.value_trackers = {name: keras.metrics.Mean(name=name) for name in self.METRICS}
        self.skipped_tracker = keras.metrics.Sum(name="skipped_batches")

    @property
    def metrics(self):
        return [self.loss_tracker, *self.value_trackers.values(), self.skipped_tracker]

    def contrastive_step(self, inputs, training):
        """This replica's loss and metric values for one batch."""
        raise NotImplementedError

    def encoders(self):
        """The encoders to export, by modality."""
        raise NotImplementedError

    def _record(self, loss, values, finite):
        # A skipped batch does not enter the averages (weight 0, and 0 instead of NaN).
        weight = tf.cast(finite, "float32")
        self.loss_tracker.update_state(tf.where(finite, loss, 0.0), sample_weight=weight)
        for name, value in values.items():
            self.value_trackers[name].update_state(tf.where(finite, value, 0.0), sample_weight=weight)

    def train_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)  # pre-training has no labels
        ctx = tf.distribute.get_replica_context()
        replicas = ctx.num_replicas_in_sync
        saved = [tf.identity(v) for v in self.non_trainable_variables]
        with tf.GradientTape() as tape:
            loss, values = self.contrastive_step(data, training=True)
            scaled = self.optimizer.scale_loss(tf.cast(loss, "float32") / replicas)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        if self.l2_penalty:
            # Scaled like the loss, so that the optimizer's unscaling and replica sum restore l2 * w.
            factor = self.optimizer.scale_loss(tf.constant(self.l2_penalty / replicas, "float32"))
            grads = [g + tf.cast(factor, g.dtype) * tf.cast(v, g.dtype) for g, v in zip(grads, variables)]
        bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(self._all_finite(loss, grads), "float32"))
        finite = tf.equal(bad, 0.0)
        self._apply_or_restore(grads, variables, finite, saved)
        self._record(loss, values, finite)
        # Each replica adds 1/replicas: the aggregated sum counts a skipped batch once.
        self.skipped_tracker.update_state((1.0 - tf.cast(finite, "float32")) / replicas)
        logs = {m.name: m.result() for m in self.metrics}
        logs["learning_rate"] = tf.cast(self.optimizer.learning_rate, "float32")
        return logs

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

    def _apply_or_restore(self, grads, variables, finite, saved):
        """Applies `grads` if `finite` (the same on every replica), else puts the non-trainable state back."""

        def restore(values):
            for variable, value in zip(self.non_trainable_variables, values):
                variable.assign(value)

        if tf.__internal__.distribute.strategy_supports_no_merge_call():
            tf.cond(finite, lambda: self.optimizer.apply(grads, variables) or tf.no_op(),
                    lambda: restore(saved) or tf.no_op())
            return

        # MirroredStrategy: optimizer.apply calls merge_call, which a cond branch in a
        # replica context must not do. Decide in the cross-replica context instead
        # (the pattern of Keras' LossScaleOptimizer).
        def cross_replica(strategy, grads, finite, saved):
            decided = strategy.experimental_local_results(finite)[0]

            def apply():
                strategy.extended.call_for_each_replica(lambda g: self.optimizer.apply(g, variables), args=(grads,))

            def skip():
                strategy.extended.call_for_each_replica(restore, args=(saved,))

            tf.cond(decided, apply, skip)

        tf.distribute.get_replica_context().merge_call(cross_replica, args=(grads, finite, saved))

    def test_step(self, data):
        data, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        loss, values = self.contrastive_step(data, training=False)
        self._record(loss, values, tf.math.is_finite(loss))
        return {m.name: m.result() for m in self.metrics if m is not self.skipped_tracker}


def pair_metrics(a, b, all_a, all_b, offset):
    """Cross-modal retrieval top-1/top-5 and the embedding spread of a batch of pairs."""
    return {
        "top1": retrieval_accuracy(a, b, all_a, all_b, offset, k=1),
        "top5": retrieval_accuracy(a, b, all_a, all_b, offset, k=5),
        "spread": (embedding_spread(all_a) + embedding_spread(all_b)) / 2.0,
    }

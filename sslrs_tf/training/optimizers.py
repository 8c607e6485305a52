"""Optimizers and learning-rate schedules from the config.

``weight_decay`` means what it meant in the papers' PyTorch code: for ``adam``
and ``sgd`` an L2 term added to the gradients (PyTorch's ``Adam``/``SGD``
``weight_decay``), which the method's ``train_step`` applies; for ``adamw`` and
``lamb`` decoupled decay (Keras' ``weight_decay``).
"""

import keras
import tensorflow as tf

COUPLED_L2 = ("adam", "sgd")


# Why by hand: Keras 3's Adam and SGD build their update from ~12 (Adam) or ~5 (SGD) graph
# ops per variable. TF has had one fused kernel per variable for exactly these updates
# (ResourceApplyAdam, ResourceApplyKerasMomentum) for years; Keras 3 no longer calls them.
# Measured on DualSimCLR ResNet-10's 80 variables: see bench/README.md (optimizer_apply.py);
# tracing (paid by every run and every test that trains) and each step's update both shrink.
# Same formulas, float32 rounding apart (tested against NumPy, on one device and two).
class _StepScalars:
    """One update's scalars by (name, dtype, graph). A plain object: Keras would track a dict
    attribute of an optimizer as checkpoint state."""

    def __init__(self):
        self.by_key = {}


class _Fused:
    """Shared by the fused optimizers: the step's scalars are made once per update, not per variable."""

    def apply(self, grads, trainable_variables=None):
        # Keras calls update_step once per variable inside one apply (under a strategy, in
        # its cross-replica merge, after every replica has entered apply).
        self._step_scalars = _StepScalars()
        return super().apply(grads, trainable_variables)

    def _scalar(self, name, dtype, make):
        # Keyed by graph too: the update can be traced in several graphs (a cond branch, a loop body).
        cache = self._step_scalars.by_key
        key = (name, dtype, tf.compat.v1.get_default_graph())
        if key not in cache:
            cache[key] = make()
        return cache[key]


class _FusedAdamUpdate(_Fused):
    """The fused Adam update of FusedAdam and FusedAdamW (AdamW's decoupled decay is applied by Keras before it)."""

    def update_step(self, gradient, variable, learning_rate):
        if self.amsgrad or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)

        def powers():
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            return (tf.pow(beta_1, step), tf.pow(beta_2, step), tf.cast(learning_rate, dtype), beta_1, beta_2,
                    tf.cast(self.epsilon, dtype))

        beta1_power, beta2_power, lr, beta_1, beta_2, epsilon = self._scalar("adam", dtype, powers)
        # Inside the optimizer's per-variable update, `variable` is a tf.Variable (one replica's
        # copy under a strategy) and `.handle` of a slot variable resolves to that same replica's.
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[index].value.handle, v=self._velocities[index].value.handle,
            beta1_power=beta1_power, beta2_power=beta2_power, lr=lr, beta1=beta_1, beta2=beta_2, epsilon=epsilon,
            grad=tf.cast(gradient, dtype))


@keras.saving.register_keras_serializable(package="sslrs_tf")
class FusedAdam(_FusedAdamUpdate, keras.optimizers.Adam):
    """Keras' :class:`keras.optimizers.Adam` whose update is TF's fused Adam kernel (one op per variable).

    Same arguments and update as Keras' Adam; ``amsgrad`` and sparse gradients take Keras' own path.

    Example:
    >>> optimizer = FusedAdam(1e-3)
    """


@keras.saving.register_keras_serializable(package="sslrs_tf")
class FusedAdamW(_FusedAdamUpdate, keras.optimizers.AdamW):
    """Keras' :class:`keras.optimizers.AdamW` (decoupled decay applied by Keras first), fused Adam update.

    Example:
    >>> optimizer = FusedAdamW(5e-4, weight_decay=0.05)
    """


@keras.saving.register_keras_serializable(package="sslrs_tf")
class FusedSGD(_Fused, keras.optimizers.SGD):
    """Keras' :class:`keras.optimizers.SGD`; with momentum (not Nesterov) its update is TF's fused kernel
    (``m = momentum * m - lr * g; w += m``, Keras' formula).

    Example:
    >>> optimizer = FusedSGD(0.03, momentum=0.9)
    """

    def update_step(self, gradient, variable, learning_rate):
        if not self.momentum or self.nesterov or isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        lr, momentum = self._scalar("sgd", dtype, lambda: (tf.cast(learning_rate, dtype), tf.cast(self.momentum, dtype)))
        return tf.raw_ops.ResourceApplyKerasMomentum(
            var=variable.handle, accum=self.momentums[self._get_variable_index(variable)].value.handle,
            lr=lr, grad=tf.cast(gradient, dtype), momentum=momentum)


def learning_rate(config, steps_per_epoch, epochs, peak=None):
    """A float; a cosine schedule with linear warm-up (Keras' CosineDecay) that advances every step;
    or steps (``lr × decay_factor`` at each of ``decay_epochs``, as the papers' fine-tuning)."""
    peak = config.lr if peak is None else peak
    if config.schedule == "constant":
        return peak
    if config.schedule == "step":
        boundaries = [int(e * steps_per_epoch) for e in sorted(config.decay_epochs)]
        if not boundaries:
            return peak
        values = [peak * config.decay_factor ** i for i in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, total - warmup, warmup_target=peak, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(peak, total)


def make_optimizer(config, steps_per_epoch, epochs, lr=None):
    """The optimizer of `config` (an :class:`~sslrs_tf.config.OptimizerConfig`) and the L2 penalty for train_step.

    `lr` replaces ``config.lr`` as the peak learning rate (the encoders' optimizer of fine-tuning).
    """
    lr = learning_rate(config, steps_per_epoch, epochs, lr)
    decoupled = None if config.name in COUPLED_L2 or not config.weight_decay else config.weight_decay
    optimizer = {
        "adam": lambda: FusedAdam(lr),
        # AdamW without decay is Adam; Keras' AdamW would still add a decay op per variable to the step.
        "adamw": lambda: FusedAdamW(lr, weight_decay=decoupled) if decoupled else FusedAdam(lr),
        "sgd": lambda: FusedSGD(lr, momentum=config.momentum),
        "lamb": lambda: keras.optimizers.Lamb(lr, weight_decay=decoupled),
    }[config.name]()
    return optimizer, (config.weight_decay if config.name in COUPLED_L2 else 0.0)

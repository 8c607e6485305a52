"""Optimizers and learning-rate schedules from the config.

``weight_decay`` means what it meant in the papers' PyTorch code: for ``adam``
and ``sgd`` an L2 term added to the gradients (PyTorch's ``Adam``/``SGD``
``weight_decay``), which the method's ``train_step`` applies; for ``adamw`` and
``lamb`` decoupled decay (Keras' ``weight_decay``).
"""

import keras

COUPLED_L2 = ("adam", "sgd")


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
        "adam": lambda: keras.optimizers.Adam(lr),
        # AdamW without decay is Adam; Keras' AdamW would still add a decay op per variable to the step.
        "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=decoupled) if decoupled else keras.optimizers.Adam(lr),
        "sgd": lambda: keras.optimizers.SGD(lr, momentum=config.momentum),
        "lamb": lambda: keras.optimizers.Lamb(lr, weight_decay=decoupled),
    }[config.name]()
    return optimizer, (config.weight_decay if config.name in COUPLED_L2 else 0.0)

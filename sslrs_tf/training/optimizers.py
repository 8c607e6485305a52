"""Optimizers and learning-rate schedules from the config.

``weight_decay`` means what it meant in the papers' PyTorch code: for ``adam``
and ``sgd`` an L2 term added to the gradients (PyTorch's ``Adam``/``SGD``
``weight_decay``), which the method's ``train_step`` applies; for ``adamw`` and
``lamb`` decoupled decay (Keras' ``weight_decay``).
"""

import keras

COUPLED_L2 = ("adam", "sgd")


def learning_rate(config, steps_per_epoch, epochs):
    """A float, or a cosine schedule with linear warm-up (Keras' CosineDecay) that advances every step."""
    if config.schedule == "constant":
        return config.lr
    total = max(1, steps_per_epoch * epochs)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    if warmup:
        return keras.optimizers.schedules.CosineDecay(0.0, total - warmup, warmup_target=config.lr, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(config.lr, total)


def make_optimizer(config, steps_per_epoch, epochs):
    """The optimizer of `config` (an :class:`~sslrs_tf.config.OptimizerConfig`) and the L2 penalty for train_step."""
    lr = learning_rate(config, steps_per_epoch, epochs)
    decoupled = None if config.name in COUPLED_L2 or not config.weight_decay else config.weight_decay
    optimizer = {
        "adam": lambda: keras.optimizers.Adam(lr),
        "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=decoupled or 0.0),
        "sgd": lambda: keras.optimizers.SGD(lr, momentum=config.momentum),
        "lamb": lambda: keras.optimizers.Lamb(lr, weight_decay=decoupled),
    }[config.name]()
    return optimizer, (config.weight_decay if config.name in COUPLED_L2 else 0.0)

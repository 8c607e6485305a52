"""Pre-training methods, one class per method, registered by name."""

from sslrs_tf.methods.dual_simclr import DualSimCLR

METHODS = {
    "dual_simclr": DualSimCLR,
}


def get_method(name):
    """The method class registered as `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]

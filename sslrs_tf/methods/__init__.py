"""What ``train.py`` trains, one class per method, registered by the name ``model.method`` uses."""

from sslrs_tf.methods.classifier import Classifier
from sslrs_tf.methods.dual_simclr import DualSimCLR
from sslrs_tf.methods.mma import MMA
from sslrs_tf.methods.moco import MoCo
from sslrs_tf.methods.segmenter import Segmenter
from sslrs_tf.methods.simclr import SimCLR

METHODS = {
    "dual_simclr": DualSimCLR,
    "mma": MMA,
    "moco_single": MoCo,  # the mode is the part after "moco_"
    "moco_sensor": MoCo,
    "moco_fusion": MoCo,
    "moco_partial_fusion": MoCo,
    "simclr": SimCLR,
    "classifier": Classifier,
    "segmenter": Segmenter,
}


def get_method(name):
    """The method class registered as `name`."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    return METHODS[name]

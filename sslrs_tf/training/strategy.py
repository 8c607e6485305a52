"""tf.distribute strategies and mixed precision, from config names."""

import json
import os

import keras
import tensorflow as tf

from sslrs_tf.errors import UserError


def make_strategy(name):
    """The strategy of ``train.distribution``.

    * ``auto``: MirroredStrategy over the visible GPUs, the default (one-device) strategy otherwise;
    * ``one_device``: the default strategy;
    * ``mirrored``: MirroredStrategy over the visible GPUs, or over the logical CPU devices
      when there is no GPU (as in tests);
    * ``multi_worker``: MultiWorkerMirroredStrategy, from the ``TF_CONFIG`` environment variable;
    * ``tpu``: TPUStrategy on the TPU found by the cluster resolver.
    """
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        try:
            json.loads(os.environ["TF_CONFIG"])
        except (KeyError, ValueError):
            raise UserError("train.distribution: multi_worker needs TF_CONFIG (JSON with cluster and task) in the environment") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as err:
            raise UserError(f"train.distribution: tpu, but no TPU was found ({str(err).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    raise UserError(f"train.distribution: unknown strategy {name!r}")


def set_precision(policy):
    """Sets Keras' global dtype policy (``float32``, ``mixed_float16``, ``mixed_bfloat16``)."""
    keras.mixed_precision.set_global_policy(policy)

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
    if name == "multi_worker":
        # Before anything lists devices: that starts TF's runtime, after which collective ops
        # can no longer be configured.
        try:
            json.loads(os.environ["TF_CONFIG"])
        except (KeyError, ValueError):
            raise UserError("train.distribution: multi_worker needs TF_CONFIG (JSON with cluster and task) in the environment") from None
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as err:  # this process already ran TensorFlow (e.g. a protocol's second run)
            raise UserError(f"train.distribution: multi_worker must start its process: run one train.py per "
                            f"worker ({err})") from None
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.NotFoundError) as err:
            raise UserError(f"train.distribution: tpu, but no TPU was found ({str(err).splitlines()[0]})") from None
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device" or (name == "auto" and len(gpus) < 2):
        return tf.distribute.get_strategy()
    if name in ("auto", "mirrored"):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    raise UserError(f"train.distribution: unknown strategy {name!r}")


def jit_compile(setting, strategy, deterministic=False):
    """Whether the training step is XLA-compiled: `setting` (``train.jit_compile``) when given; else on
    when `strategy` runs on GPUs or TPUs, where XLA is usually the faster path, unless the run is
    `deterministic` (Keras compiles nothing with XLA under TF's op determinism), and off on CPUs,
    where this project's machines ran the step slower with it."""
    if setting is not None:
        return setting
    if deterministic:
        return False
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return True
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default strategy: TF's default device, the first GPU if there is one
        return bool(tf.config.list_logical_devices("GPU"))
    return any(tf.DeviceSpec.from_string(d).device_type in ("GPU", "TPU") for d in devices)


def worker_role(strategy):
    """``(is_chief, name)`` of this process in `strategy`'s cluster.

    The chief (task ``chief``, or worker 0 of a cluster without one) writes the run
    directory; the other workers write what they must (checkpoints: saving reads
    variables collectively, so every worker saves) to ``RUN_DIR/workers/<name>``,
    removed when the run ends. One process (no cluster): ``(True, "chief")``.
    """
    resolver = getattr(strategy, "cluster_resolver", None)
    task = getattr(resolver, "task_type", None)
    if not task:
        return True, "chief"
    index = getattr(resolver, "task_id", 0) or 0
    jobs = resolver.cluster_spec().as_dict()
    chief = task == "chief" or (task == "worker" and index == 0 and "chief" not in jobs)
    return chief, f"{task}_{index}"


def set_precision(policy):
    """Sets Keras' global dtype policy (``float32``, ``mixed_float16``, ``mixed_bfloat16``)."""
    keras.mixed_precision.set_global_policy(policy)

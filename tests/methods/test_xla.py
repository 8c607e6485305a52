"""The methods' training steps compile with XLA (``train.jit_compile: true``) and train, as on a TPU, which compiles
every step: static shapes and no operation without an XLA kernel. The closest check of the TPU path a CPU allows;
numbers under XLA are not compared with those without (XLA rounds, and draws random numbers, otherwise)."""

import contextlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from sslrs_tf.config import load_config
from sslrs_tf.experiment import Experiment
from sslrs_tf.training.run import build, plan
from tests.helpers import ROOT

#: each method through its shipped config, small: batch 4 of 32 px crops, the narrow encoders. Each piece of training
#: step code once (an XLA compile costs 15-50 s here): Dual-SimCLR's step on Swin encoders (Dual-SimCLR on ResNets
#: runs the same step; ResNets compile in the others), MoCo's queue and key encoder with the in-step augmentations
#: (the sensor-pair mode and SimCLR are not compiled here; tests/data/test_augment.py compiles the augmentations),
#: MMA on VGG, the classifier with two optimizers and its confusion-matrix metrics (the downstream step the
#: segmenter shares; its decoder is not compiled here).
SMALL = ("train.batch_size=4", "data.crop_size=32", "train.jit_compile=true", "train.deterministic=false",
         "data.validation_split=null", "optimizer.schedule=constant")  # (a warm-up's first step has lr 0)
METHODS = {
    "dual_swin": ("dual_swin.yaml", "model.backbone=swin_micro"),
    "moco_fusion": ("moco_fusion.yaml", "model.backbone=resnet10", "model.queue_size=16"),
    "mma": ("mma.yaml", "model.embedding_dim=32"),
    "classifier": ("finetune_tiny.yaml",),
}


@contextlib.contextmanager
def op_determinism_off():
    """TF's op determinism off in the block, as train.py has it with ``train.deterministic: false``."""
    was = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if was:
            tf_config.enable_op_determinism()


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_the_training_step_of_each_method_compiles_with_xla_and_trains(small_world, method):
    config_file, *overrides = METHODS[method]
    config = load_config(ROOT / "configs" / config_file, [*small_world, *SMALL, *overrides])
    experiment = Experiment(config)
    batch = next(iter(experiment.dataset(config.data.split, training=True)))
    # (Keras would not compile with XLA under op determinism, which another test's run may have turned on.)
    with op_determinism_off():
        model, _ = build(experiment, plan(experiment), tf.distribute.get_strategy())
        assert model.jit_compile and config.model.method == method.replace("dual_swin", "dual_simclr")
        before = [v.numpy().copy() for v in model.trainable_variables]
        # Keras compiles its step with jit_compile: the whole step as one XLA computation, or an error naming
        # the operation XLA cannot compile.
        model.make_train_function()
        logs = model.train_function(iter([batch]))
    assert np.isfinite(float(logs["loss"])), logs
    assert sum(not np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables, strict=True)) \
        > len(before) // 2, {k: float(v) for k, v in logs.items()}

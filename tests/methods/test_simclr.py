"""SimCLR on RGB: views made in the step from (step, replica) seeds, learning, and train.py end to end."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.data.augment import augment
from sslrs_tf.losses.contrastive import nt_xent
from sslrs_tf.methods import SimCLR, get_method
from sslrs_tf.training.optimizers import FusedAdam


def rgb_batch(batch=8, size=32, seed=0):
    rng = np.random.default_rng(seed)
    # Smooth, distinct patches in [0, 1]: something for the two views of one patch to share.
    base = rng.random((batch, 4, 4, 3)).astype(np.float32)
    return {"s2": np.repeat(np.repeat(base, size // 4, axis=1), size // 4, axis=2) * 0.3}


def test_registered_round_trips_and_refuses_a_non_rgb_band_list():
    assert get_method("simclr") is SimCLR
    m = SimCLR("resnet10", temperature=0.2, strength=0.5)
    again = SimCLR.from_config(m.get_config())
    assert (again.temperature, again.strength) == (0.2, 0.5)
    with pytest.raises(ValueError, match="Received: backbone='vgg'"):
        SimCLR("vgg")


def test_views_come_from_the_step_and_the_loss_falls():
    keras.utils.set_random_seed(0)
    # Milder views than the ImageNet recipe, so that a few steps show learning.
    m = SimCLR("resnet10", temperature=0.2, strength=0.2, crop_scale=(0.5, 1.0))
    m.compile(optimizer=FusedAdam(1e-3), jit_compile=False)
    batch = rgb_batch()
    # The views of a step are the augmentations seeded by (step, replica 0): recomputable.
    v1, v2 = m.views(batch["s2"])
    seeds = m.augmentation_seeds(2)
    np.testing.assert_array_equal(v1, augment(batch["s2"], seeds[0], 0.2, (0.5, 1.0)))
    assert not np.allclose(v1, v2)
    # Each training step sees new views; the loss is compared on two fixed views (batch statistics,
    # as in training: a few steps leave BatchNorm's moving averages far from them).
    fixed = [augment(batch["s2"], tf.constant([9, s], tf.int64), 0.2, (0.5, 1.0)) for s in (1, 2)]

    def fixed_loss():
        return float(nt_xent(*(m({"s2": v}, training=True) for v in fixed), m.temperature))

    before = fixed_loss()
    for _ in range(10):
        m.train_on_batch(batch)
    assert int(m.optimizer.iterations.numpy()) == 10
    assert fixed_loss() < 0.8 * before
    v3, _ = m.views(batch["s2"])
    assert not np.allclose(v1, v3)  # another step, other views

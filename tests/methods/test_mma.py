"""MMA: VGG encoders, patch-similarity InfoNCE; learning, config round trip, a train.py run and its card."""


import keras
import numpy as np
import pytest

from sslrs_tf.methods import MMA, get_method
from sslrs_tf.training.optimizers import FusedAdam
from tests.helpers import paired_batches


def test_registered_and_round_trips_its_config():
    assert get_method("mma") is MMA
    m = MMA(s2_channels=10, embedding_dim=32, temperature=0.2)
    again = MMA.from_config(m.get_config())
    assert (again.s2_channels, again.embedding_dim, again.temperature) == (10, 32, 0.2)
    with pytest.raises(ValueError, match="`temperature` must be positive. Received: temperature=0"):
        MMA(temperature=0)


def test_feature_maps_are_aligned_and_the_loss_falls_on_a_repeated_batch():
    keras.utils.set_random_seed(0)
    m = MMA(embedding_dim=64)
    (batch,) = paired_batches(1, size=32, batch=8)
    features = m.encoder_s2(batch["s2"])["P3"]
    assert features.shape == (8, 4, 4, 64)  # output stride 8: a map, not a vector
    m.compile(optimizer=FusedAdam(1e-3), jit_compile=False)
    losses = [float(m.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(6)]
    assert losses[-1] < losses[0] * 0.8, losses
    assert np.isfinite(losses).all()

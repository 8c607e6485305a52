"""MMA: VGG encoders, patch-similarity InfoNCE; learning, config round trip, a train.py run and its card."""


import keras
import numpy as np
import pytest

from sslrs_tf.methods import MMA, get_method
from sslrs_tf.training.optimizers import FusedAdam
from tests.helpers import card_of, paired_batches


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
    features = m.encoder_s2(batch["s2"])["features"]
    assert features.shape == (8, 4, 4, 64)  # output stride 8: a map, not a vector
    m.compile(optimizer=FusedAdam(1e-3), jit_compile=False)
    losses = [float(m.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(6)]
    assert losses[-1] < losses[0] * 0.8, losses
    assert np.isfinite(losses).all()


@pytest.mark.slow
def test_train_py_runs_mma_and_exports_vgg_encoders_with_their_card(mma_run):
    # train.py on configs/mma.yaml, briefly, as a real process in the background (tests/conftest.py).
    mma_run.join()
    out = mma_run.dir
    card = card_of(out)
    assert card["method"] == "mma" and card["backbone"] == "vgg"
    assert card["encoders"]["s1"]["output"] == {"features": [None, None, None, 32], "pooled": [None, 32]}
    s2 = keras.saving.load_model(out / "export" / card["encoders"]["s2"]["file"])
    assert s2(np.zeros((1, 32, 32, 13), np.float32))["features"].shape == (1, 4, 4, 32)
    assert "val_top1" in card["final_metrics"]

import numpy as np
import pytest
import keras

from sslrs_tf.config import ENCODERS
from sslrs_tf.models.encoders import BACKBONES, SWINS, feature_dim, is_encoder, resnet_encoder
from sslrs_tf.models.heads import projection_head


@pytest.mark.parametrize("channels", [2, 13, 15])
def test_resnet18_for_any_channel_count_gives_pooled_and_pyramid(channels):
    encoder = resnet_encoder("resnet18", channels)
    out = encoder(np.zeros((2, 64, 64, channels), np.float32))
    assert out["pooled"].shape == (2, feature_dim("resnet18")) == (2, 512)
    assert [out[k].shape[1] for k in ("P2", "P3", "P4", "P5")] == [16, 8, 4, 2]
    bns = [l for l in encoder._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert bns and all(l.synchronized for l in bns)


def test_resnet50_width_and_head():
    encoder = resnet_encoder("resnet50", 2, name="s1")
    pooled = encoder(np.zeros((1, 32, 32, 2), np.float32))["pooled"]
    assert pooled.shape == (1, 2048)
    head = projection_head(2048)
    assert head(pooled).shape == (1, 128)
    assert [l.units for l in head.layers if isinstance(l, keras.layers.Dense)] == [2048, 128]


def test_resnet10_is_resnet18_with_one_block_per_stage():
    small, full = resnet_encoder("resnet10", 2), resnet_encoder("resnet18", 2)
    assert small(np.zeros((1, 32, 32, 2), np.float32))["pooled"].shape == (1, 512)
    convs = lambda m: sum(isinstance(l, keras.layers.Conv2D) for l in m._flatten_layers())  # noqa: E731
    assert convs(small) == 1 + 4 * 2 + 3 and convs(full) == 1 + 8 * 2 + 3  # stem, blocks, shortcuts


def test_bad_arguments_quote_what_was_received():
    with pytest.raises(ValueError, match="unknown backbone 'resnet19'"):
        resnet_encoder("resnet19", 2)
    with pytest.raises(ValueError, match="Received: in_channels=0"):
        resnet_encoder("resnet18", 0)


def test_the_configs_list_of_encoders_is_what_make_encoder_builds():
    # config.ENCODERS checks names before TensorFlow loads; it must not drift from the encoders.
    assert sorted(ENCODERS) == sorted([*BACKBONES, *SWINS]) and all(is_encoder(e) for e in ENCODERS)

"""MMA's VGG encoder: its layout against a NumPy forward pass, output stride 8, widths, argument errors."""

import keras
import numpy as np
import pytest

from sslrs_tf.models.vgg import vgg_encoder


def conv3x3_same(x, kernel):
    """A 3x3 'same' convolution without bias in NumPy ([B, H, W, I] x [3, 3, I, O])."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    return sum(padded[:, i:i + h, j:j + w] @ kernel[i, j] for i in range(3) for j in range(3))


def max_pool2(x):
    b, h, w, c = x.shape
    return x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))


def numpy_vgg(x, encoder, name, epsilon):
    """[conv -> BN (moving statistics) -> ReLU] x 2 per block, 2x2 max-pool between blocks, not after the last."""
    x = x.astype(np.float64)
    for block in range(1, 5):
        if block > 1:
            x = max_pool2(x)
        for conv in (1, 2):
            (kernel,) = encoder.get_layer(f"{name}_b{block}_conv{conv}").get_weights()
            gamma, beta, mean, var = encoder.get_layer(f"{name}_b{block}_bn{conv}").get_weights()
            x = conv3x3_same(x, kernel.astype(np.float64))
            x = np.maximum(gamma * (x - mean) / np.sqrt(var + epsilon) + beta, 0.0)
    return x


def test_inference_is_two_conv_bn_relu_per_block_with_pooling_between_blocks():
    keras.utils.set_random_seed(0)
    encoder = vgg_encoder(3, widths=(4, 5, 6, 7), name="enc")
    rng = np.random.default_rng(0)
    for layer in encoder.layers:  # BatchNorms that do something: random affine and moving statistics
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(size=c), rng.normal(size=c) * 0.1,
                               rng.uniform(0.5, 2, c)])
    x = rng.normal(size=(2, 16, 24, 3)).astype(np.float32)
    out = encoder(x, training=False)
    epsilon = encoder.get_layer("enc_b1_bn1").epsilon
    want = numpy_vgg(x, encoder, "enc", epsilon)
    assert want.shape == (2, 2, 3, 7) and (want > 0).mean() > 0.2  # not a map the last ReLU zeroed
    np.testing.assert_allclose(np.asarray(out["P3"]), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(out["pooled"]), want.mean((1, 2)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [32, 40, 44])
def test_output_stride_is_8_and_the_blocks_have_the_published_widths(size):
    encoder = vgg_encoder(2)
    out = encoder(np.zeros((1, size, size, 2), np.float32))
    assert out["P3"].shape == (1, size // 8, size // 8, 256) and out["pooled"].shape == (1, 256)
    # The other blocks' outputs, for a segmentation decoder: strides 1, 2, 4.
    assert [out[f"P{k}"].shape for k in range(3)] == [(1, size // 2**k, size // 2**k, w)
                                                      for k, w in enumerate((64, 128, 256))]
    convs = [l for l in encoder.layers if isinstance(l, keras.layers.Conv2D)]
    assert [l.filters for l in convs] == [64, 64, 128, 128, 256, 256, 256, 256]
    assert all(l.kernel_size == (3, 3) and not l.use_bias for l in convs)
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in encoder.layers) == 3
    assert encoder.name == "vgg" and encoder.input_shape == (None, None, None, 2)


def test_the_last_width_is_the_embedding_and_sync_bn_is_per_argument():
    encoder = vgg_encoder(13, widths=(8, 8, 8, 32), sync_bn=False, name="encoder_s2")
    assert encoder(np.zeros((2, 16, 16, 13), np.float32))["pooled"].shape == (2, 32)
    bns = [l for l in encoder.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 8 and not any(l.synchronized for l in bns)
    assert encoder.name == "encoder_s2" and all(l.name.startswith("encoder_s2_") for l in encoder.layers[1:])
    synced = vgg_encoder(2, widths=(8, 8, 8, 8))
    assert all(l.synchronized for l in synced.layers if isinstance(l, keras.layers.BatchNormalization))


def test_bad_arguments_quote_what_was_received():
    with pytest.raises(ValueError, match=r"Received: in_channels=0"):
        vgg_encoder(0)
    with pytest.raises(ValueError, match=r"Received: in_channels=2\.0"):
        vgg_encoder(2.0)
    with pytest.raises(ValueError, match=r"`widths` must have 4 entries. Received: widths=\[64, 128, 256\]"):
        vgg_encoder(2, widths=(64, 128, 256))

"""The UNet baseline and the pyramid decoder: their layout against a NumPy forward pass, shapes, channel counts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.models.unet import pyramid_decoder, unet

LEVELS = ("P2", "P3", "P4", "P5")


def conv_same(x, kernel, bias=None):
    """A k x k 'same' convolution (odd k, stride 1) in NumPy."""
    k, h, w = kernel.shape[0], x.shape[1], x.shape[2]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
    out = sum(padded[:, i:i + h, j:j + w] @ kernel[i, j] for i in range(k) for j in range(k))
    return out if bias is None else out + bias


def resize_axis(x, axis, factor):
    """Bilinear upsampling along one axis, pixel centres aligned (TF's half_pixel_centers)."""
    n = x.shape[axis]
    src = np.clip((np.arange(n * factor) + 0.5) / factor - 0.5, 0, n - 1)
    low = np.floor(src).astype(int)
    high, weight = np.minimum(low + 1, n - 1), src - low
    shape = [1] * x.ndim
    shape[axis] = -1
    return np.take(x, low, axis) * (1 - weight.reshape(shape)) + np.take(x, high, axis) * weight.reshape(shape)


def upsample(x, factor):
    return resize_axis(resize_axis(x, 1, factor), 2, factor)


def max_pool2(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))


def conv_block(x, model, name):
    """[conv -> BatchNorm (moving statistics) -> ReLU] x 2 with the weights of `model`'s layers `name`_*."""
    for i in (1, 2):
        (kernel,) = model.get_layer(f"{name}_conv{i}").get_weights()
        bn = model.get_layer(f"{name}_bn{i}")
        gamma, beta, mean, var = bn.get_weights()
        x = np.maximum(gamma * (conv_same(x, kernel) - mean) / np.sqrt(var + bn.epsilon) + beta, 0.0)
    return x


def classes(x, model):
    return conv_same(x, *model.get_layer("classes").get_weights())


def numpy_unet(x, model, levels):
    """Max-pool down, bilinear x2 up, the upsampled map concatenated before the skip, 1x1 conv to the classes."""
    x, skips = x.astype(np.float64), []
    for level in range(levels):
        x = conv_block(max_pool2(x) if level else x, model, f"down{level}")
        skips.append(x)
    for level in range(levels - 2, -1, -1):
        x = conv_block(np.concatenate([upsample(x, 2), skips[level]], -1), model, f"up{level}")
    return classes(x, model)


def numpy_pyramid(maps, model, levels=("P5", "P4", "P3", "P2"), full=4):
    """From the deepest level up by 2 merging the next ones (encoders concatenated in order at each scale),
    up by `full` to the input resolution, 1x1 conv."""
    level = lambda p: np.concatenate([m[p].astype(np.float64) for m in maps.values()], -1)
    x = level(levels[0])
    for p in levels[1:]:
        x = conv_block(np.concatenate([upsample(x, 2), level(p)], -1), model, p)
    return classes(conv_block(upsample(x, full) if full > 1 else x, model, "full"), model)


def randomise_batch_norms(model, rng):
    """Random affine and moving statistics, so that a BatchNorm in the wrong place shows in the output."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, c), rng.normal(size=c) * 0.5, rng.normal(size=c) * 0.1,
                               rng.uniform(0.5, 2, c)])


def test_unet_inference_is_the_numpy_unet():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    net = unet(3, 4, widths=(4, 5, 6))
    randomise_batch_norms(net, rng)
    x = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
    got = np.asarray(net(x, training=False))
    assert got.shape == (2, 8, 12, 4)
    np.testing.assert_allclose(got, numpy_unet(x, net, 3), rtol=1e-4, atol=1e-4)


def test_unet_channels_go_down_the_widths_and_back_up_to_the_classes():
    net = unet(15, 8)
    assert net(np.zeros((1, 32, 48, 15), np.float32)).shape == (1, 32, 48, 8)  # 2 ** 4 divides both sides
    convs = {l.name: l for l in net.layers if isinstance(l, keras.layers.Conv2D)}
    up = [convs[f"up{level}_conv1"] for level in (3, 2, 1, 0)]
    assert [l.filters for l in up] == [512, 256, 128, 64]
    # Each up level sees the upsampled map beside its skip: 512 + 512, 512 + 256, 256 + 128, 128 + 64.
    assert [l.kernel.shape[2] for l in up] == [1024, 768, 384, 192]
    assert convs["down0_conv1"].kernel.shape[2] == 15 and convs["classes"].kernel.shape == (1, 1, 64, 8)
    assert convs["classes"].use_bias and not any(l.use_bias for n, l in convs.items() if n != "classes")


def test_unet_depth_follows_the_widths_and_refuses_one_level():
    net = unet(2, 3, widths=(4, 8))
    assert net(np.zeros((1, 6, 10, 2), np.float32)).shape == (1, 6, 10, 3)  # one pooling: even sides suffice
    assert sum(isinstance(l, keras.layers.MaxPooling2D) for l in net.layers) == 1
    with pytest.raises(ValueError, match=r"`widths` must have at least 2 levels. Received: widths=\(64,\)"):
        unet(2, 3, widths=(64,))


def pyramid_maps(channels, batch=2, size=2, seed=0):
    """Random maps for `channels`: P5 `size` px, P4..P2 twice as large each."""
    rng = np.random.default_rng(seed)
    return {e: {p: rng.normal(size=(batch, size << (3 - i), size << (3 - i), c)).astype(np.float32)
                for i, (p, c) in enumerate(sorted(maps.items()))} for e, maps in channels.items()}


def test_pyramid_decoder_fuses_the_encoders_in_order_as_the_numpy_decoder():
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    channels = {"s1": {"P2": 3, "P3": 4, "P4": 5, "P5": 6}, "s2": {"P2": 2, "P3": 3, "P4": 4, "P5": 7}}
    decoder = pyramid_decoder(channels, 5, widths=(6, 5, 4, 3))
    randomise_batch_norms(decoder, rng)
    maps = pyramid_maps(channels)
    got = np.asarray(decoder(maps, training=False))
    assert got.shape == (2, 64, 64, 5)  # 4 x P2's 16 px: the input resolution of stride-4 P2 maps
    np.testing.assert_allclose(got, numpy_pyramid(maps, decoder), rtol=1e-4, atol=1e-4)
    assert {l.name for l in decoder.layers if isinstance(l, keras.layers.Concatenate)} == {
        *(f"fuse_{p}" for p in LEVELS), "P4_skip", "P3_skip", "P2_skip"}
    # The first merge sees P5 of both encoders (6 + 7) upsampled beside both P4s (5 + 4).
    assert decoder.get_layer("P4_conv1").kernel.shape == (3, 3, 22, 6)


def test_pyramid_decoder_of_one_encoder_concatenates_nothing_across_encoders():
    channels = {"s2": {"P2": 8, "P3": 8, "P4": 8, "P5": 8}}
    decoder = pyramid_decoder(channels, 3)
    assert len(decoder.inputs) == 4 and not any(l.name.startswith("fuse_") for l in decoder.layers)
    assert [decoder.get_layer(f"{p}_conv1").filters for p in ("P4", "P3", "P2", "full")] == [256, 128, 64, 32]
    assert decoder(pyramid_maps(channels, batch=1, size=3)).shape == (1, 96, 96, 3)


def test_pyramid_decoder_refuses_maps_other_than_it_was_built_for():
    channels = {"s1": {"P2": 3, "P3": 4, "P4": 5, "P5": 6}}
    decoder = pyramid_decoder(channels, 2, widths=(4, 4, 4, 4))
    wrong_width = {"s1": {p: np.concatenate([m, m[..., :1]], -1) for p, m in pyramid_maps(channels)["s1"].items()}}
    with pytest.raises(ValueError, match="expected axis -1 of input shape to have value"):
        decoder(wrong_width)
    same_size = {"s1": {p: np.zeros((1, 4, 4, c), np.float32) for p, c in channels["s1"].items()}}
    with pytest.raises(tf.errors.InvalidArgumentError, match="Dimension 1 in both shapes must be equal"):
        decoder(same_size)  # P5 upsampled is twice P4's size: the maps must halve from P2 to P5


def test_pyramid_decoder_over_vgg_levels_from_stride_1_adds_no_final_upsampling():
    # MMA's VGG encoders give P0-P3 (strides 1-8): the decoder ends at P0's resolution.
    keras.utils.set_random_seed(2)
    rng = np.random.default_rng(2)
    channels = {"s1": {"P0": 2, "P1": 3, "P2": 4, "P3": 5}, "s2": {"P0": 3, "P1": 2, "P2": 3, "P3": 4}}
    decoder = pyramid_decoder(channels, 4, widths=(5, 4, 3, 3))
    randomise_batch_norms(decoder, rng)
    maps = {e: {p: rng.normal(size=(2, 16 // 2 ** int(p[1]), 16 // 2 ** int(p[1]), c)).astype(np.float32)
                for p, c in levels.items()} for e, levels in channels.items()}
    got = np.asarray(decoder(maps, training=False))
    assert got.shape == (2, 16, 16, 4) and "full_resize" not in {layer.name for layer in decoder.layers}
    np.testing.assert_allclose(got, numpy_pyramid(maps, decoder, ("P3", "P2", "P1", "P0"), full=1),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("channels, widths, message", [
    ({"s1": {"P2": 3, "P3": 4}}, (4, 4, 4), r"`widths` must have 2 entries for levels \['P3', 'P2'\]"),
    ({"s1": {"P2": 3}, "s2": {"P3": 3}}, (4,), "must give every encoder the same levels"),
    ({"s1": {"pooled": 3}}, (4,), "levels P<k>. Received: channels="),
])
def test_pyramid_decoder_argument_errors_quote_what_was_received(channels, widths, message):
    with pytest.raises(ValueError, match=message):
        pyramid_decoder(channels, 2, widths=widths)

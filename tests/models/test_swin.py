"""Swin encoders and SwinUNet layers against plain NumPy loops, shapes, published size, saving."""

import keras
import numpy as np
import pytest
from scipy.special import erf

from sslrs_tf.models.swin import PatchMerging, SwinBlock, swin_encoder
from sslrs_tf.models.swin_unet import PatchExpand, swin_unet_decoder


def eager_and_traced(layer, x):
    """The layer's output eagerly and inside a tf.function (static shapes and Python branches differ there)."""
    import tensorflow as tf

    return layer(x).numpy(), tf.function(lambda t: layer(t))(x).numpy()


def layer_norm(x, gamma, beta):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_block(x, w, heads, window, shift):
    """A Swin block written token by token: window membership and the wrap-around mask from coordinates."""
    n, height, width, c = x.shape
    hd = c // heads
    s = window // 2 if shift else 0
    y = layer_norm(x, w["norm1/gamma"], w["norm1/beta"])
    attended = np.zeros_like(x)
    for b in range(n):
        for wr in range(0, height, window):
            for wc in range(0, width, window):
                # Positions of the window in the shifted frame, and the pixels they hold.
                cells = [(wr + i, wc + j) for i in range(window) for j in range(window)]
                pixels = [((r + s) % height, (q + s) % width) for r, q in cells]
                tokens = np.stack([y[b, r, q] for r, q in pixels])
                qkv = tokens @ w["attn/qkv/kernel"] + w["attn/qkv/bias"]
                out = []
                for h in range(heads):
                    q_, k_, v_ = (qkv[:, t * c + h * hd: t * c + (h + 1) * hd] for t in range(3))
                    logits = q_ @ k_.T / np.sqrt(hd)
                    for a, (ra, qa) in enumerate(cells):
                        for z, (rz, qz) in enumerate(cells):
                            index = (ra - rz + window - 1) * (2 * window - 1) + (qa - qz + window - 1)
                            logits[a, z] += w["attn/relative_position_bias_table"][index, h]
                            # Pixels that wrapped around must not attend to pixels that did not.
                            wrapped_a = (ra >= height - s, qa >= width - s) if s else None
                            wrapped_z = (rz >= height - s, qz >= width - s) if s else None
                            if wrapped_a != wrapped_z:
                                logits[a, z] -= 100.0
                    out.append(softmax(logits) @ v_)
                result = np.concatenate(out, -1) @ w["attn/proj/kernel"] + w["attn/proj/bias"]
                for (r, q), value in zip(pixels, result):
                    attended[b, r, q] = value
    x = x + attended
    hidden = layer_norm(x, w["norm2/gamma"], w["norm2/beta"]) @ w["mlp_fc1/kernel"] + w["mlp_fc1/bias"]
    hidden = 0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))  # exact GELU, as PyTorch's
    return x + hidden @ w["mlp_fc2/kernel"] + w["mlp_fc2/bias"]


def randomised(layer, rng):
    """Gives every weight of `layer` random values (LayerNorm's ones and zeros would hide mistakes)."""
    for v in layer.weights:
        v.assign(rng.normal(scale=0.3, size=v.shape).astype(np.float32))
    return {v.path.split("/", 1)[1]: v.numpy() for v in layer.weights}


@pytest.mark.parametrize("shift", [False, True])
def test_swin_block_matches_a_token_by_token_reference(shift):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 8, 8, 8)).astype(np.float32)
    block = SwinBlock(8, num_heads=2, window_size=4, shift=shift, name="block")
    block.build(x.shape)
    weights = randomised(block, rng)
    expected = reference_block(x.astype(np.float64), weights, heads=2, window=4, shift=shift)
    for got in eager_and_traced(block, x):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_window_larger_than_the_map_shrinks_to_it_and_does_not_shift():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 2, 2, 8)).astype(np.float32)
    block = SwinBlock(8, num_heads=2, window_size=7, shift=True, name="block")
    block.build(x.shape)
    weights = randomised(block, rng)
    assert weights["attn/relative_position_bias_table"].shape == (9, 2)  # (2*2 - 1)^2 positions
    np.testing.assert_allclose(block(x), reference_block(x.astype(np.float64), weights, 2, 2, False), atol=1e-4)


def test_patch_merging_and_expanding_match_numpy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 4, 6, 3)).astype(np.float32)
    merge = PatchMerging(3)
    merge.build(x.shape)
    w = randomised(merge, rng)
    quads = np.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
    np.testing.assert_allclose(merge(x), layer_norm(quads, w["norm/gamma"], w["norm/beta"]) @ w["reduction/kernel"],
                               rtol=1e-4, atol=1e-4)

    expand = PatchExpand(scale=2, out_dim=3)
    expand.build(x.shape)
    w = randomised(expand, rng)
    y = x @ w["expand/kernel"]  # [2, 4, 6, 2*2*3]
    big = np.zeros((2, 8, 12, 3))
    for i in range(4):
        for j in range(6):
            for a in range(2):
                for b in range(2):
                    big[:, 2 * i + a, 2 * j + b] = y[:, i, j, (2 * a + b) * 3:(2 * a + b + 1) * 3]
    for got in eager_and_traced(expand, x):
        np.testing.assert_allclose(got, layer_norm(big, w["norm/gamma"], w["norm/beta"]), rtol=1e-4, atol=1e-4)


def test_swin_t_has_the_published_size_and_maps():
    encoder = swin_encoder("swin_t", 2, 224)
    # timm's swin_tiny_patch4_window7_224: 28 288 354 parameters with its 1000-class head
    # (768 x 1000 + 1000) and 3 input channels (a 4x4 patch conv of 96 filters per channel).
    assert encoder.count_params() == 28_288_354 - 769_000 - 4 * 4 * 96
    shapes = {k: tuple(v.shape) for k, v in encoder.output.items()}
    assert shapes == {"pooled": (None, 768), "P2": (None, 56, 56, 96), "P3": (None, 28, 28, 192),
                      "P4": (None, 14, 14, 384), "P5": (None, 7, 7, 768)}
    depths = [sum(1 for layer in encoder.layers if layer.name.startswith(f"layers_{i}_blocks")) for i in range(4)]
    assert depths == [2, 2, 6, 2]
    last = encoder.get_layer("layers_3_blocks_1")
    assert last.drop_path == pytest.approx(0.1) and last.window == 7 and last.offset == 0  # 7 x 7 grid: no shift


def test_encoder_saves_and_loads_and_refuses_sizes_it_cannot_window(tmp_path):
    encoder = swin_encoder("swin_micro", 13, 32)
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 13)).astype(np.float32)
    encoder.save(tmp_path / "e.keras")
    again = keras.saving.load_model(tmp_path / "e.keras")
    for key, value in encoder(x).items():
        np.testing.assert_array_equal(again(x)[key], value)
    with pytest.raises(ValueError, match=r"Received: image_size=128 \(grids \[32, 16, 8, 4\]\)"):
        swin_encoder("swin_t", 13, 128)
    with pytest.raises(ValueError, match="unknown backbone 'swin_b'"):
        swin_encoder("swin_b", 13, 224)


def test_swin_unet_decoder_takes_each_streams_maps_to_full_resolution():
    encoders = {m: swin_encoder("swin_micro", c, 32, name=m) for m, c in (("s1", 2), ("s2", 13))}
    decoder = swin_unet_decoder("swin_micro", ("s1", "s2"), 32, num_classes=8)
    x = {"s1": np.zeros((2, 32, 32, 2), np.float32), "s2": np.zeros((2, 32, 32, 13), np.float32)}
    maps = {m: {p: out[p] for p in ("P2", "P3", "P4", "P5")} for m, out in ((m, e(x[m])) for m, e in encoders.items())}
    assert decoder(maps).shape == (2, 32, 32, 8)
    # Decoder depths are the encoder's in reverse without the deepest stage (2, 2, 2 for swin_micro).
    assert sum(1 for layer in decoder.layers if layer.name.startswith("s1_layers_up")) == 6

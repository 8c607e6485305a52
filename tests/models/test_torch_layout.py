"""The naming table and layout transposes between sslrs_tf encoders and the released PyTorch state dicts.

The expected keys and shapes are written out here from torchvision's ResNet and the original
Swin code (no PyTorch needed); tests/test_convert.py converts real PyTorch models end to end.
"""

import numpy as np
import pytest

from sslrs_tf.models.encoders import make_encoder
from sslrs_tf.models.swin import relative_position_index
from sslrs_tf.models.torch_layout import (
    check_buffers,
    guess_arch,
    is_extra,
    is_head,
    is_swin,
    to_keras,
    torch_key,
    torch_shape,
)

BN = ("weight", "bias", "running_mean", "running_var")


def torchvision_resnet(blocks, in_channels, bottleneck=False):
    """{key: shape} of torchvision's ResNet without its head (``fc``)."""
    state = {"conv1.weight": (64, in_channels, 7, 7), **{f"bn1.{p}": (64,) for p in BN}}
    inplanes = 64
    for stage, (count, planes) in enumerate(zip(blocks, (64, 128, 256, 512)), 1):
        width = planes * 4 if bottleneck else planes
        for b in range(count):
            pre, cin = f"layer{stage}.{b}", inplanes if b == 0 else width
            kernels = ([(planes, cin, 1, 1), (planes, planes, 3, 3), (width, planes, 1, 1)] if bottleneck
                       else [(planes, cin, 3, 3), (planes, planes, 3, 3)])
            for i, shape in enumerate(kernels, 1):
                state[f"{pre}.conv{i}.weight"] = shape
                state.update({f"{pre}.bn{i}.{p}": (shape[0],) for p in BN})
            if b == 0 and (stage > 1 or bottleneck):
                state[f"{pre}.downsample.0.weight"] = (width, inplanes, 1, 1)
                state.update({f"{pre}.downsample.1.{p}": (width,) for p in BN})
        inplanes = width
    return state


def original_swin(in_channels, patch=2, dim=24, depths=(2, 2, 2, 2), heads=(1, 2, 4, 8), window=2):
    """{key: shape} of the original Swin code's weights without its head, buffers and masks."""
    state = {"patch_embed.proj.weight": (dim, in_channels, patch, patch), "patch_embed.proj.bias": (dim,),
             "patch_embed.norm.weight": (dim,), "patch_embed.norm.bias": (dim,)}
    for i, (depth, h) in enumerate(zip(depths, heads)):
        d = dim * 2 ** i
        for j in range(depth):
            pre = f"layers.{i}.blocks.{j}"
            state.update({f"{pre}.norm1.weight": (d,), f"{pre}.norm1.bias": (d,),
                          f"{pre}.attn.relative_position_bias_table": ((2 * window - 1) ** 2, h),
                          f"{pre}.attn.qkv.weight": (3 * d, d), f"{pre}.attn.qkv.bias": (3 * d,),
                          f"{pre}.attn.proj.weight": (d, d), f"{pre}.attn.proj.bias": (d,),
                          f"{pre}.norm2.weight": (d,), f"{pre}.norm2.bias": (d,),
                          f"{pre}.mlp.fc1.weight": (4 * d, d), f"{pre}.mlp.fc1.bias": (4 * d,),
                          f"{pre}.mlp.fc2.weight": (d, 4 * d), f"{pre}.mlp.fc2.bias": (d,)})
        if i < len(depths) - 1:
            state.update({f"layers.{i}.downsample.norm.weight": (4 * d,), f"layers.{i}.downsample.norm.bias": (4 * d,),
                          f"layers.{i}.downsample.reduction.weight": (2 * d, 4 * d)})
    last = dim * 2 ** (len(depths) - 1)
    return {**state, "norm.weight": (last,), "norm.bias": (last,)}


def keras_to_torch(value):
    """The inverse of to_keras, written independently: conv [kh, kw, I, O] -> [O, I, kh, kw], linear transposed."""
    return {4: lambda v: v.transpose(3, 2, 0, 1), 2: lambda v: v.T}.get(value.ndim, lambda v: v)(value)


@pytest.mark.parametrize("arch, expected", [
    ("resnet10", torchvision_resnet([1, 1, 1, 1], 13)),
    ("resnet18", torchvision_resnet([2, 2, 2, 2], 13)),
    ("swin_micro", original_swin(13)),
], ids=["resnet10", "resnet18", "swin_micro"])
def test_every_encoder_variable_maps_to_its_own_released_key_and_shape(arch, expected):
    encoder = make_encoder(arch, 13, image_size=32)
    mapped = {}
    for v in encoder.weights:
        key = torch_key(arch, v.path)
        assert key not in mapped, f"{v.path} and another variable both map to {key}"
        mapped[key] = torch_shape(v.path, v.shape)
    assert len(mapped) == len(encoder.weights)
    assert sorted(mapped) == sorted(expected)  # one-to-one: no key left over on either side
    assert {k: tuple(s) for k, s in mapped.items()} == expected


@pytest.mark.parametrize("arch", ["resnet10", "swin_micro"])
def test_to_keras_undoes_the_layout_of_every_variable(arch):
    rng = np.random.default_rng(0)
    encoder = make_encoder(arch, 2, image_size=32)
    kinds = set()
    for v in encoder.weights:
        value = rng.normal(size=v.shape).astype(np.float32)
        stored = keras_to_torch(value) if v.path.endswith("/kernel") else value
        assert stored.shape == tuple(torch_shape(v.path, v.shape)), v.path
        back = to_keras(stored, v.path)
        assert back.dtype == np.float32 and back.shape == tuple(v.shape), v.path
        np.testing.assert_array_equal(back, value, err_msg=v.path)
        kinds.add((v.path.rsplit("/", 1)[-1], len(v.shape)))
    # Convolutions, linear layers, and 2-D variables that are not kernels (left as they are).
    swin = {("kernel", 2), ("relative_position_bias_table", 2)} if arch == "swin_micro" else set()
    assert {("kernel", 4), ("gamma", 1), *swin} <= kinds


def test_to_keras_moves_each_element_to_its_place_and_reads_float64_as_float32():
    conv = np.arange(5 * 3 * 2 * 4, dtype=np.float64).reshape(5, 3, 2, 4)  # PyTorch [O, I, kh, kw]
    keras_conv = to_keras(conv, "conv1_conv/kernel")
    assert keras_conv.shape == (2, 4, 3, 5) and keras_conv.dtype == np.float32
    assert keras_conv[1, 3, 2, 4] == conv[4, 2, 1, 3]
    linear = np.arange(6.0).reshape(2, 3)  # PyTorch [out, in]
    assert to_keras(linear, "layers_0_blocks_0/attn/qkv/kernel")[2, 1] == linear[1, 2]
    table = np.arange(6.0).reshape(3, 2)  # a 2-D table, not a kernel: as stored
    np.testing.assert_array_equal(to_keras(table, "layers_0_blocks_0/attn/relative_position_bias_table"), table)
    assert torch_shape("x/relative_position_bias_table", (9, 4)) == (9, 4)
    assert torch_shape("x/kernel", (3, 3, 64, 128)) == (128, 64, 3, 3) and torch_shape("x/kernel", (24, 72)) == (72, 24)


def test_keys_of_deeper_blocks_and_bottlenecks():
    assert torch_key("resnet50", "stack3_block2_3_conv/kernel") == "layer4.2.conv3.weight"
    assert torch_key("resnet50", "stack0_block0_0_bn/moving_mean") == "layer1.0.downsample.1.running_mean"
    assert torch_key("resnet18", "stack2_block1_2_bn/gamma") == "layer3.1.bn2.weight"
    assert torch_key("swin_t", "layers_2_blocks_5/mlp_fc2/bias") == "layers.2.blocks.5.mlp.fc2.bias"
    assert torch_key("swin_t", "layers_2_downsample/reduction/kernel") == "layers.2.downsample.reduction.weight"
    assert is_swin("swin_t") and is_swin("swin_micro") and not is_swin("resnet50")


def test_a_variable_without_pytorch_counterpart_is_named():
    with pytest.raises(ValueError, match=r"no PyTorch counterpart for variable 'conv1_bn/seed_generator_state'"):
        torch_key("resnet10", "conv1_bn/seed_generator_state")


def test_heads_and_buffers_are_extra_keys_of_their_own_family_only():
    heads = {"resnet18": ["fc.weight", "fc.bias", "fc.0.weight", "fc.2.bias"],
             "swin_t": ["head.weight", "head.bias", "head.0.weight", "head.2.bias"]}
    buffers = {"resnet18": ["bn1.num_batches_tracked", "layer2.0.downsample.1.num_batches_tracked"],
               "swin_t": ["layers.0.blocks.0.attn.relative_position_index", "layers.0.blocks.1.attn_mask"]}
    weights = {"resnet18": ["conv1.weight", "layer1.0.bn1.running_var", "layer4.1.conv2.weight"],
               "swin_t": ["norm.weight", "layers.0.blocks.0.mlp.fc1.weight", "patch_embed.proj.bias",
                          "layers.0.blocks.0.attn.relative_position_bias_table"]}
    for arch, other in (("resnet18", "swin_t"), ("swin_t", "resnet18")):
        assert all(is_head(arch, k) and is_extra(arch, k) for k in heads[arch])
        assert all(is_extra(arch, k) and not is_head(arch, k) for k in buffers[arch])
        assert not any(is_extra(arch, k) for k in weights[arch])
        # Another family's head or buffer is an unexpected key here, not something to skip quietly.
        assert not any(is_extra(arch, k) for k in heads[other] + buffers[other])


def test_check_buffers_names_relative_position_indices_that_are_not_swins():
    good = relative_position_index(2)
    index = "backbone{}.layers.{}.blocks.{}.attn.relative_position_index"
    state = {index.format(1, 0, 0): good,
             index.format(1, 0, 1): good[::-1].copy(),  # another indexing of the bias table
             index.format(1, 3, 0): relative_position_index(1),  # a window shrunk to the grid: its own index
             index.format(2, 0, 0): np.zeros((4, 4), np.int64),  # under the other prefix
             "backbone1.layers.0.blocks.0.attn.relative_position_bias_table": np.zeros((9, 1), np.float32)}
    assert check_buffers("swin_micro", state, "backbone1.") == [index.format(1, 0, 1)]
    assert check_buffers("swin_micro", state, "backbone2.") == [index.format(2, 0, 0)]
    state[index.format(1, 1, 0)] = good[:3]  # not square
    assert check_buffers("swin_micro", state, "backbone1.") == [index.format(1, 0, 1), index.format(1, 1, 0)]
    assert check_buffers("resnet18", state, "backbone1.") == []  # a ResNet has no such buffer to check


@pytest.mark.parametrize("keys, arch", [
    (torchvision_resnet([1, 1, 1, 1], 2), "resnet10"),
    (torchvision_resnet([2, 2, 2, 2], 2), "resnet18"),
    (torchvision_resnet([3, 4, 6, 3], 2), "resnet34"),
    (torchvision_resnet([3, 4, 6, 3], 2, bottleneck=True), "resnet50"),
    (torchvision_resnet([3, 4, 23, 3], 2, bottleneck=True), None),  # ResNet-101: no such encoder here
    (torchvision_resnet([2, 2, 2, 1], 2), None),
    (original_swin(2), "swin_micro"),
    (original_swin(13, patch=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7), "swin_t"),
    (original_swin(2, depths=(2, 2, 2)), None),
    ({"encoder.weight": ()}, None),
], ids=["resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet-2221", "swin_micro", "swin_t",
        "swin-3-stages", "unknown"])
def test_guess_arch_reads_blocks_per_stage_and_the_block_type(keys, arch):
    keys = [*keys, "fc.0.weight", "fc.0.bias"] if "conv1.weight" in keys else list(keys)  # a head does not matter
    assert guess_arch(keys) == arch

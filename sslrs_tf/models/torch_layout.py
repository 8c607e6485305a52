"""Where each weight of an sslrs_tf encoder lives in a PyTorch state dict of the research code's layout.

The released dual-backbone checkpoints (SPEC §4) name ResNet weights as torchvision
does (``conv1.weight``, ``bn1.running_mean``, ``layer1.0.conv1.weight``,
``layer2.0.downsample.0.weight``) and Swin weights as the original Swin code does
(``patch_embed.proj.weight``, ``layers.0.blocks.1.attn.qkv.weight``,
``layers.0.downsample.reduction.weight``, ``norm.weight``). The encoders of
:mod:`sslrs_tf.models.encoders` are built so that every Keras variable path maps to
one of those keys by renaming alone (keras-hub's ResNet pads like PyTorch and puts
the bottleneck stride on the 3x3 conv, as torchvision does; the Swin layers keep the
original names), so this module is a naming table plus two layout transposes,
written here because no library maps keras-hub/sslrs_tf layer names to these keys.

Only the layout is known here; reading ``.pth`` files (PyTorch) lives in
:mod:`sslrs_tf.convert`.
"""

import re

import numpy as np

from sslrs_tf.models.encoders import BACKBONES, RESNETS
from sslrs_tf.models.swin import SWINS, relative_position_index

# Keras leaf name -> PyTorch parameter/buffer name.
_LEAVES = {"kernel": "weight", "bias": "bias", "gamma": "weight", "beta": "bias",
           "moving_mean": "running_mean", "moving_variance": "running_var",
           "relative_position_bias_table": "relative_position_bias_table"}
_RESNET_LAYERS = [
    (re.compile(r"^conv1_conv$"), "conv1"),
    (re.compile(r"^conv1_bn$"), "bn1"),
    (re.compile(r"^stack(\d+)_block(\d+)_0_conv$"), lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.0"),
    (re.compile(r"^stack(\d+)_block(\d+)_0_bn$"), lambda m: f"layer{int(m[1]) + 1}.{m[2]}.downsample.1"),
    (re.compile(r"^stack(\d+)_block(\d+)_([123])_conv$"), lambda m: f"layer{int(m[1]) + 1}.{m[2]}.conv{m[3]}"),
    (re.compile(r"^stack(\d+)_block(\d+)_([123])_bn$"), lambda m: f"layer{int(m[1]) + 1}.{m[2]}.bn{m[3]}"),
]
_SWIN_LAYERS = [
    (re.compile(r"^layers_(\d+)_blocks_(\d+)$"), r"layers.\1.blocks.\2"),
    (re.compile(r"^layers_(\d+)_downsample$"), r"layers.\1.downsample"),
    (re.compile(r"^mlp_(fc[12])$"), r"mlp.\1"),
]
# Keys of the released layout that hold no encoder weight: BatchNorm's step counter, the
# Swin buffers (index and shift mask, both recomputed from the architecture), and the
# projection heads (ResNet ``fc``, Swin ``head``), which downstream use does not need.
_BUFFERS = {"resnet": re.compile(r"(^|\.)num_batches_tracked$"),
            "swin": re.compile(r"\.attn\.relative_position_index$|\.attn_mask$")}
_HEADS = {"resnet": re.compile(r"^fc(\.\d+)?\.(weight|bias)$"), "swin": re.compile(r"^head(\.\d+)?\.(weight|bias)$")}


def is_swin(arch):
    """Whether `arch` names a Swin (else a ResNet)."""
    return arch in SWINS


def torch_key(arch, keras_path):
    """The PyTorch key (without the ``backbone1.`` prefix) of the Keras variable at `keras_path`.

    Example:
    >>> torch_key("resnet18", "stack1_block0_0_bn/moving_variance")
    'layer2.0.downsample.1.running_var'
    """
    *layers, leaf = keras_path.split("/")
    if leaf not in _LEAVES:
        raise ValueError(f"no PyTorch counterpart for variable {keras_path!r}")
    names = []
    for name in layers:
        for pattern, repl in (_SWIN_LAYERS if is_swin(arch) else _RESNET_LAYERS):
            match = pattern.match(name)
            if match:
                name = pattern.sub(repl, name) if isinstance(repl, str) else repl(match)
                break
        names.append(name)
    return ".".join([*names, _LEAVES[leaf]])


def _is_kernel(keras_path):
    return keras_path.rsplit("/", 1)[-1] == "kernel"


def torch_shape(keras_path, keras_shape):
    """The shape PyTorch stores the variable at `keras_path` in (conv ``[O, I, kh, kw]``, linear ``[out, in]``)."""
    shape = tuple(keras_shape)
    if _is_kernel(keras_path) and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if _is_kernel(keras_path) and len(shape) == 2:
        return shape[::-1]
    return shape


def to_keras(value, keras_path):
    """`value` (a PyTorch-layout array) in Keras' layout for the variable at `keras_path`."""
    value = np.asarray(value, np.float32)
    if _is_kernel(keras_path) and value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if _is_kernel(keras_path) and value.ndim == 2:
        return value.T
    return value


def _family(arch):
    return "swin" if is_swin(arch) else "resnet"


def is_head(arch, key):
    """Whether `key` (without prefix) is a weight of the projection head of an `arch` backbone."""
    return bool(_HEADS[_family(arch)].search(key))


def is_extra(arch, key):
    """Whether `key` (without prefix) belongs to the released layout but holds no encoder weight."""
    return is_head(arch, key) or bool(_BUFFERS[_family(arch)].search(key))


def check_buffers(arch, state, prefix):
    """The Swin relative-position index buffers of `state` that differ from this architecture's (keys)."""
    if not is_swin(arch):
        return []
    bad = []
    for key, value in state.items():
        if key.startswith(prefix) and key.endswith(".attn.relative_position_index"):
            value = np.asarray(value)
            window = int(round(np.sqrt(value.shape[0])))
            if value.shape != (window ** 2,) * 2 or not np.array_equal(value, relative_position_index(window)):
                bad.append(key)
    return bad


def guess_arch(keys):
    """The architecture a state dict's keys (one backbone, no prefix) look like, or None.

    Counts blocks per stage (``layer{s}.{b}``) and looks for a bottleneck's ``conv3``;
    a Swin by its ``patch_embed`` and blocks per stage. Used to say what a
    checkpoint is when it does not match the requested architecture.
    """
    def blocks(pattern):
        found = {}
        for key in keys:
            m = re.match(pattern, key)
            if m:
                found[int(m[1])] = max(found.get(int(m[1]), 0), int(m[2]) + 1)
        return tuple(found.get(s, 0) for s in sorted(found))

    if any(k.startswith("patch_embed.") for k in keys):
        depths = blocks(r"^layers\.(\d+)\.blocks\.(\d+)\.")
        return next((name for name, spec in SWINS.items() if tuple(spec["depths"]) == depths), None)
    block = "bottleneck_block" if any(re.match(r"^layer\d+\.\d+\.conv3\.", k) for k in keys) else "basic_block"
    depths = list(blocks(r"^layer(\d+)\.(\d+)\."))
    return next((name for name, depth in BACKBONES.items() if RESNETS[depth][:2] == (block, depths)), None)

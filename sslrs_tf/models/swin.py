"""Swin Transformer encoders (Dual-Swin, CVPR EarthVision 2022) and the blocks SwinUNet's decoder reuses.

Written here rather than taken from keras-hub 0.32's ``SwinTransformerBackbone``,
which builds Swin-T offline but (1) returns only the final tokens (its stages
hide the maps a UNet decoder needs), (2) fails for a token grid smaller than the
window (its blocks shrink the window but size the relative-position table for
the full one), (3) cannot be saved (``PatchEmbedding.get_config`` serialises a
class), and (4) forgets drop-path and qkv bias in its blocks' configs. The layers
below follow the original Swin code: the same merging order, relative-position
index, shift mask (-100) and layer names (``patch_embed``, ``layers_{i}_blocks_{j}``
with ``attn.qkv``, ``attn.proj``, ``attn.relative_position_bias_table``, ``mlp_fc1``,
``layers_{i}_downsample``, ``norm``), so that the released PyTorch checkpoints
convert by renaming. Maps stay ``[B, H, W, C]`` between layers; a Swin is built for
one input size (windows and masks are fixed at construction).
"""

import keras
import numpy as np
from keras import ops

SWINS = {
    # name: architecture (drop-path, MLP ratio 4 and qkv bias are common to all)
    # Swin-T as published, for 224 px inputs (token grids 56-28-14-7, window 7).
    "swin_t": {"patch_size": 4, "embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24),
               "window_size": 7},
    # Not a published encoder: the same layout, narrow, for tests and quick runs at 32 px (grids 16-8-4-2).
    "swin_micro": {"patch_size": 2, "embed_dim": 24, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8),
                   "window_size": 2},
}
LEVELS = ("P2", "P3", "P4", "P5")
EPS = 1e-5  # PyTorch's LayerNorm default, which the published weights were trained with


def _norm(name):
    return keras.layers.LayerNormalization(epsilon=EPS, name=name)


@keras.saving.register_keras_serializable(package="sslrs_tf")
class PatchEmbed(keras.layers.Layer):
    """Non-overlapping ``patch_size`` patches, linearly embedded (a strided conv) and layer-normalised.

    Args:
        patch_size: patch side in pixels (4 for Swin-T).
        embed_dim: embedding width C (96 for Swin-T).
    """

    def __init__(self, patch_size, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.patch_size, self.embed_dim = patch_size, embed_dim
        self.proj = keras.layers.Conv2D(embed_dim, patch_size, strides=patch_size, name="proj")
        self.norm = _norm("norm")

    def build(self, input_shape):
        self.proj.build(input_shape)
        self.norm.build((*input_shape[:-1], self.embed_dim))

    def call(self, x):
        return self.norm(self.proj(x))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return b, h // self.patch_size, w // self.patch_size, self.embed_dim

    def get_config(self):
        return {**super().get_config(), "patch_size": self.patch_size, "embed_dim": self.embed_dim}


def relative_position_index(window):
    """``[w², w²]`` index into the ``(2w-1)²`` bias table for each pair of positions in a window (as in Swin)."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def shift_mask(height, width, window, shift):
    """``[nW, w², w²]`` additive mask (0 or -100) keeping shifted windows from attending across the wrap-around."""
    regions = np.zeros((height, width), np.int32)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for k, (hs, ws) in enumerate((hs, ws) for hs in cuts for ws in cuts):
        regions[hs, ws] = k
    windows = regions.reshape(height // window, window, width // window, window).transpose(0, 2, 1, 3)
    windows = windows.reshape(-1, window * window)
    return np.where(windows[:, :, None] != windows[:, None, :], -100.0, 0.0).astype(np.float32)


@keras.saving.register_keras_serializable(package="sslrs_tf")
class WindowAttention(keras.layers.Layer):
    """Multi-head self-attention inside windows, with a learned relative-position bias per head.

    Args:
        dim: token width.
        num_heads: attention heads.
        window_size: window side w (inputs are ``[B·nW, w², dim]``).
        qkv_bias: biases on the query/key/value projection.
    """

    def __init__(self, dim, num_heads, window_size, qkv_bias=True, **kwargs):
        super().__init__(**kwargs)
        if dim % num_heads:
            raise ValueError(f"`dim` must be divisible by `num_heads`. Received: dim={dim}, num_heads={num_heads}")
        self.dim, self.num_heads, self.window_size, self.qkv_bias = dim, num_heads, window_size, qkv_bias
        self.qkv = keras.layers.Dense(3 * dim, use_bias=qkv_bias, name="qkv")
        self.proj = keras.layers.Dense(dim, name="proj")
        self.index = relative_position_index(window_size).reshape(-1)

    def build(self, input_shape):
        self.relative_position_bias_table = self.add_weight(
            shape=((2 * self.window_size - 1) ** 2, self.num_heads), name="relative_position_bias_table",
            initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, x, attn_mask=None):
        n, heads = self.window_size ** 2, self.num_heads
        qkv = ops.transpose(ops.reshape(self.qkv(x), (-1, n, 3, heads, self.dim // heads)), (2, 0, 3, 1, 4))
        # Unstacked, not indexed: each index's gradient is a zero-filled copy of the whole qkv tensor
        # (StridedSliceGrad, then summed), which took ~15 % of a Dual-Swin-T training step.
        q, k, v = ops.unstack(qkv, 3, axis=0)
        attn = ops.matmul(q * ops.cast((self.dim // heads) ** -0.5, q.dtype), ops.transpose(k, (0, 1, 3, 2)))
        bias = ops.take(self.relative_position_bias_table, self.index, axis=0)
        attn = attn + ops.cast(ops.transpose(ops.reshape(bias, (n, n, heads)), (2, 0, 1)), attn.dtype)
        if attn_mask is not None:
            windows = attn_mask.shape[0]
            attn = ops.reshape(attn, (-1, windows, heads, n, n)) + ops.cast(attn_mask[None, :, None], attn.dtype)
            attn = ops.reshape(attn, (-1, heads, n, n))
        out = ops.matmul(ops.softmax(attn, axis=-1), v)
        return self.proj(ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, n, self.dim)))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "window_size": self.window_size, "qkv_bias": self.qkv_bias}


@keras.saving.register_keras_serializable(package="sslrs_tf")
class SwinBlock(keras.layers.Layer):
    """One Swin Transformer block on a ``[B, H, W, dim]`` map: (shifted-)window attention, then an MLP.

    A window larger than the map shrinks to the map and does not shift, as in Swin.

    Args:
        dim: channels.
        num_heads: attention heads.
        window_size: window side.
        shift: shift the windows by half a window (every second block).
        mlp_ratio: MLP hidden width / dim.
        drop_path: probability of dropping the block's residual branches for a sample (training only).
        qkv_bias: biases on the query/key/value projection.
    """

    def __init__(self, dim, num_heads, window_size=7, shift=False, mlp_ratio=4.0, drop_path=0.0, qkv_bias=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.dim, self.num_heads, self.window_size, self.shift = dim, num_heads, window_size, shift
        self.mlp_ratio, self.drop_path, self.qkv_bias = mlp_ratio, drop_path, qkv_bias
        self.norm1, self.norm2 = _norm("norm1"), _norm("norm2")
        self.fc1 = keras.layers.Dense(int(dim * mlp_ratio), activation="gelu", name="mlp_fc1")  # exact GELU
        self.fc2 = keras.layers.Dense(dim, name="mlp_fc2")
        self.seed = keras.random.SeedGenerator()

    def build(self, input_shape):
        _, h, w, c = input_shape
        if h is None or w is None:
            raise ValueError(f"SwinBlock needs a fixed map size. Received: input_shape={input_shape}")
        self.window = min(self.window_size, h, w)
        self.offset = self.window // 2 if self.shift and min(h, w) > self.window_size else 0
        if h % self.window or w % self.window:
            raise ValueError(f"the map ({h} x {w}) must be a whole number of {self.window}-px windows")
        self.mask = shift_mask(h, w, self.window, self.offset) if self.offset else None
        self.attn = WindowAttention(c, self.num_heads, self.window, self.qkv_bias, name="attn")
        self.attn.build((None, self.window ** 2, c))
        for layer in (self.norm1, self.norm2):
            layer.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build((*input_shape[:-1], int(c * self.mlp_ratio)))

    def _drop(self, x, training):
        if not training or not self.drop_path:
            return x
        keep = 1.0 - self.drop_path
        shape = (ops.shape(x)[0], 1, 1, 1)
        return x * ops.cast(keras.random.uniform(shape, seed=self.seed) < keep, x.dtype) / keep

    def call(self, x, training=False):
        _, h, w, c = x.shape
        win, s = self.window, self.offset
        y = self.norm1(x)
        if s:
            y = ops.roll(y, (-s, -s), axis=(1, 2))
        y = ops.reshape(ops.transpose(ops.reshape(y, (-1, h // win, win, w // win, win, c)), (0, 1, 3, 2, 4, 5)),
                        (-1, win * win, c))
        y = self.attn(y, attn_mask=None if self.mask is None else ops.convert_to_tensor(self.mask))
        y = ops.reshape(ops.transpose(ops.reshape(y, (-1, h // win, w // win, win, win, c)), (0, 1, 3, 2, 4, 5)),
                        (-1, h, w, c))
        if s:
            y = ops.roll(y, (s, s), axis=(1, 2))
        x = x + self._drop(y, training)
        return x + self._drop(self.fc2(self.fc1(self.norm2(x))), training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "num_heads": self.num_heads,
                "window_size": self.window_size, "shift": self.shift, "mlp_ratio": self.mlp_ratio,
                "drop_path": self.drop_path, "qkv_bias": self.qkv_bias}


@keras.saving.register_keras_serializable(package="sslrs_tf")
class PatchMerging(keras.layers.Layer):
    """Halves the map: each 2x2 neighbourhood concatenated (Swin's order), layer-normalised, linearly to 2x channels."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim
        self.norm = _norm("norm")
        self.reduction = keras.layers.Dense(2 * dim, use_bias=False, name="reduction")

    def build(self, input_shape):
        self.norm.build((None, 4 * self.dim))
        self.reduction.build((None, 4 * self.dim))

    def call(self, x):
        # Swin's order x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2] (column offset major), by
        # reshape and transpose: strided slices have gradients that write zero-filled copies of the map.
        _, h, w, c = x.shape
        x = ops.transpose(ops.reshape(x, (-1, h // 2, 2, w // 2, 2, c)), (0, 1, 3, 4, 2, 5))
        return self.reduction(self.norm(ops.reshape(x, (-1, h // 2, w // 2, 4 * c))))

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return b, h // 2, w // 2, 2 * self.dim

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def grids(backbone, image_size):
    """The token-grid sides of the four stages for `image_size` px inputs."""
    return [image_size // SWINS[backbone]["patch_size"] // 2 ** i for i in range(4)]


def check_image_size(backbone, image_size):
    """Raises ValueError unless a `backbone` Swin can be built for `image_size` px inputs.

    Every stage's token grid must be a whole number of windows, or (as the last
    stages of Swin-T at 224 px) no larger than one window.
    """
    spec = SWINS[backbone]
    sides = grids(backbone, image_size)
    window = spec["window_size"]
    if image_size % (spec["patch_size"] * 8) or any(g > window and g % window for g in sides):
        raise ValueError(f"`image_size` must give token grids that are whole numbers of {window}-token windows at "
                         f"every stage (224 for swin_t, a multiple of 16 for swin_micro). "
                         f"Received: image_size={image_size} (grids {sides})")


def swin_dim(backbone):
    """Width of the pooled vector (8 x embed_dim: 768 for Swin-T)."""
    return SWINS[backbone]["embed_dim"] * 8


def swin_encoder(backbone, in_channels, image_size, drop_path=0.1, name=None):
    """A Swin Transformer encoder for `in_channels` channels and `image_size` x `image_size` px inputs.

    Args:
        backbone: ``"swin_t"`` (published) or ``"swin_micro"`` (tests, quick runs).
        in_channels: input channels (2 for S1, 13 for S2, 15 stacked).
        image_size: input side in pixels (224 as published; see :func:`check_image_size`).
        drop_path: stochastic-depth rate, rising linearly over the blocks to this value (0.1 as published).
        name: the model's name.

    Returns:
        A functional ``keras.Model`` from ``[B, S, S, in_channels]`` to a dict: ``pooled``
        ``[B, 8C]`` (mean of the final normalised tokens; 768 for Swin-T) and the maps
        Swin-Unet's decoder takes: ``P2`` the patch embedding ``[B, S/p, S/p, C]``, ``P3`` and
        ``P4`` the inputs of stages 2 and 3 (after patch merging; 2C and 4C channels), ``P5``
        the normalised output of the last stage (``[B, S/8p, S/8p, 8C]``); strides 4-32 for Swin-T.

    Example:
    >>> encoder = swin_encoder("swin_t", 13, 224)
    >>> encoder(np.zeros((1, 224, 224, 13)))["P2"].shape
    TensorShape([1, 56, 56, 96])
    """
    if backbone not in SWINS:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {sorted(SWINS)}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"`in_channels` must be a positive integer. Received: in_channels={in_channels!r}")
    check_image_size(backbone, image_size)
    spec = SWINS[backbone]
    rates = np.linspace(0.0, drop_path, sum(spec["depths"]))
    inputs = keras.Input((image_size, image_size, in_channels), name="image")
    x = PatchEmbed(spec["patch_size"], spec["embed_dim"], name="patch_embed")(inputs)
    maps, block = {"P2": x}, 0
    for i, (depth, heads) in enumerate(zip(spec["depths"], spec["num_heads"])):
        dim = spec["embed_dim"] * 2 ** i
        for j in range(depth):
            x = SwinBlock(dim, heads, spec["window_size"], shift=j % 2 == 1, drop_path=float(rates[block]),
                          name=f"layers_{i}_blocks_{j}")(x)
            block += 1
        if i < 3:
            x = PatchMerging(dim, name=f"layers_{i}_downsample")(x)
            if i < 2:
                maps[LEVELS[i + 1]] = x
    maps["P5"] = _norm("norm")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(maps["P5"])
    return keras.Model(inputs, {"pooled": pooled, **maps}, name=name or backbone)

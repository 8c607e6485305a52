"""SwinUNet segmentation head (CVPR EarthVision 2022): one Swin-Unet decoder per modality, fused at full size.

Written here: no Keras library has Swin-Unet. Each decoder follows Swin-Unet's
(Cao et al. 2021): patch-expanding from the deepest map (7 -> 14 -> 28 -> 56 for
Swin-T at 224 px), at each scale the encoder's skip map concatenated and projected
back to the scale's width, then Swin blocks (depth 6, 2, 2 — the encoder's depths in
reverse, without the deepest) and a final LayerNorm. The modalities' outputs
(56 x 56 x 96 each) are concatenated, expanded by the patch size (x4) to the input
resolution, and a 1x1 convolution gives the classes.
"""

import keras
import numpy as np
from keras import ops

from sslrs_tf.models.swin import EPS, SWINS, SwinBlock, grids


@keras.saving.register_keras_serializable(package="sslrs_tf")
class PatchExpand(keras.layers.Layer):
    """Enlarges a map `scale` times: a linear layer to ``scale² x out_dim`` channels, rearranged to space, normalised.

    Swin-Unet's ``PatchExpand`` is ``scale=2, out_dim=dim/2``; its ``FinalPatchExpand_X4``
    is ``scale=4, out_dim=dim``. The channel groups go to space in the order
    ``(row offset, column offset, channel)``, as its ``rearrange`` does.

    Args:
        scale: the enlargement factor.
        out_dim: output channels.
    """

    def __init__(self, scale, out_dim, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.out_dim = scale, out_dim
        self.expand = keras.layers.Dense(scale * scale * out_dim, use_bias=False, name="expand")
        self.norm = keras.layers.LayerNormalization(epsilon=EPS, name="norm")

    def build(self, input_shape):
        self.expand.build(input_shape)
        self.norm.build((None, self.out_dim))

    def call(self, x):
        _, h, w, _ = x.shape
        s, c = self.scale, self.out_dim
        x = ops.reshape(self.expand(x), (-1, h, w, s, s, c))
        x = ops.reshape(ops.transpose(x, (0, 1, 3, 2, 4, 5)), (-1, h * s, w * s, c))
        return self.norm(x)

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        return b, h * self.scale, w * self.scale, self.out_dim

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "out_dim": self.out_dim}


def swin_unet_decoder(backbone, streams, image_size, num_classes, drop_path=0.1, name="decoder"):
    """The SwinUNet head over the maps of one Swin encoder per stream.

    Args:
        backbone: the encoders' Swin (``"swin_t"``, ``"swin_micro"``).
        streams: names of the encoders (e.g. ``("s1", "s2")``); one decoder each.
        image_size: the encoders' input side.
        num_classes: output classes.
        drop_path: stochastic depth of the decoder blocks (rising to this value, as the encoder's).

    Returns:
        A functional model from ``{stream: {"P2": ..., "P5": ...}}`` (see
        :func:`sslrs_tf.models.swin.swin_encoder`) to ``[B, S, S, num_classes]`` logits.
    """
    spec = SWINS[backbone]
    c, window, sides = spec["embed_dim"], spec["window_size"], grids(backbone, image_size)
    widths = [c, 2 * c, 4 * c, 8 * c]
    inputs = {e: {p: keras.Input((side, side, width), name=f"{e}_{p}")
                  for p, side, width in zip(("P2", "P3", "P4", "P5"), sides, widths)} for e in streams}
    rates = np.linspace(0.0, drop_path, sum(spec["depths"]))
    outputs = []
    for e in streams:
        x = PatchExpand(2, widths[2], name=f"{e}_up3")(inputs[e]["P5"])
        for stage, skip in ((2, "P4"), (1, "P3"), (0, "P2")):
            x = keras.layers.Concatenate(name=f"{e}_skip{stage}")([x, inputs[e][skip]])
            x = keras.layers.Dense(widths[stage], name=f"{e}_concat_back{stage}")(x)
            first = sum(spec["depths"][:stage])
            for j in range(spec["depths"][stage]):
                x = SwinBlock(widths[stage], spec["num_heads"][stage], window, shift=j % 2 == 1,
                              drop_path=float(rates[first + j]), name=f"{e}_layers_up{stage}_blocks_{j}")(x)
            if stage:
                x = PatchExpand(2, widths[stage - 1], name=f"{e}_up{stage}")(x)
        outputs.append(keras.layers.LayerNormalization(epsilon=EPS, name=f"{e}_norm_up")(x))
    x = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate(name="fuse")(outputs)
    x = PatchExpand(spec["patch_size"], int(x.shape[-1]), name="final_expand")(x)
    logits = keras.layers.Conv2D(num_classes, 1, name="classes")(x)
    return keras.Model(inputs, logits, name=name)

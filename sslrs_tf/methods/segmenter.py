"""Downstream land-cover segmentation: a UNet-style decoder (ResNets, MMA's VGG) or SwinUNet (Swins) over the
encoders' feature maps, or the UNet baseline."""

import keras
from keras import ops

from sslrs_tf.data.labels import IGNORE, NUM_CLASSES
from sslrs_tf.methods.downstream import DownstreamMethod
from sslrs_tf.metrics import ConfusionMatrix
from sslrs_tf.models.encoders import ENCODERS
from sslrs_tf.models.swin import SWINS
from sslrs_tf.models.swin_unet import swin_unet_decoder
from sslrs_tf.models.unet import pyramid_decoder, unet

#: input sides must be multiples of this (the ResNets' P5 has stride 32; the UNet pools 4 times; VGG 3 times)
DIVISOR = {"unet": 16, "vgg": 8}


def levels(outputs):
    """The multi-scale map names (``P<k>``) among an encoder's outputs."""
    return [k for k in outputs if k[:1] == "P" and k[1:].isdigit()]


@keras.saving.register_keras_serializable(package="sslrs_tf")
class Segmenter(DownstreamMethod):
    """Per-pixel land-cover classes from one or two encoders, or from the UNet baseline.

    With a ResNet backbone, each stream's encoder gives ``P2``-``P5`` (strides 4-32;
    MMA's VGG encoders ``P0``-``P3``, strides 1-8); a UNet-style decoder
    (:func:`~sslrs_tf.models.unet.pyramid_decoder`) fuses the streams' maps by
    concatenation at each scale and decodes to the input resolution. With a Swin backbone the head is SwinUNet
    (:func:`~sslrs_tf.models.swin_unet.swin_unet_decoder`: one Swin-Unet decoder per
    stream, fused at the last scale). With ``backbone="unet"`` (only with
    ``inputs="early_fusion"``) the model is the supervised UNet baseline
    (64-128-256-512-512) on S1+S2 stacked. Loss: pixel-wise cross-entropy ignoring
    255; metrics: OA, pixel AA, mIoU.

    Args:
        backbone: ``"resnet18"``, ``"resnet50"``, ..., ``"swin_t"``, ``"swin_micro"``, ``"vgg"`` or ``"unet"``.
        inputs: ``"only_s1"``, ``"only_s2"``, ``"early_fusion"`` or ``"late_fusion"``.
        label: ``"segmentation"``.
        num_classes, s1_channels, s2_channels, freeze, sync_bn, image_size, adapters, embedding_dim: as for
            :class:`~sslrs_tf.methods.downstream.DownstreamMethod`.

    Example:
    >>> model = Segmenter("resnet18", inputs="late_fusion")
    >>> model(batch)  # {"s1": [B, 128, 128, 2], "s2": [B, 128, 128, 13]} -> [B, 128, 128, 8]
    """

    LABELS = ("segmentation",)
    BACKBONES = (*ENCODERS, "vgg", "unet")

    def __init__(self, backbone="resnet18", inputs="late_fusion", label="segmentation", num_classes=NUM_CLASSES,
                 **kwargs):
        if backbone == "unet" and inputs != "early_fusion":
            raise ValueError(f"backbone 'unet' is the early-fusion baseline. Received: inputs={inputs!r}")
        super().__init__(backbone=backbone, inputs=inputs, label=label, num_classes=num_classes, **kwargs)
        if backbone == "unet":
            self.net = unet(self.stream_channels("s1s2"), num_classes, name="unet")
        elif backbone in SWINS:
            self.net = swin_unet_decoder(backbone, tuple(self.streams), self.image_size, num_classes, name="decoder")
        else:
            channels = {name: {p: int(self.encoder_models[name].output[p].shape[-1])
                               for p in levels(self.encoder_models[name].output)} for name in self.streams}
            self.net = pyramid_decoder(channels, num_classes, name="decoder")
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=IGNORE)
        self.task_metrics = [ConfusionMatrix(num_classes, s) for s in ("OA", "AA", "mIoU")]

    def call(self, inputs, training=False):
        """Logits ``[B, H, W, num_classes]`` (float32) of a batch ``{"s1": ..., "s2": ...}``."""
        if self.backbone == "unet":
            return ops.cast(self.net(self.stream_input(inputs, "s1s2"), training=training), "float32")
        maps = {}
        for name in self.streams:
            out = self.encoder_models[name](self.stream_input(inputs, name), training=training)
            maps[name] = {p: out[p] for p in levels(out)}
        return ops.cast(self.net(maps, training=training), "float32")

    @classmethod
    def crop_divisor(cls, backbone):
        return DIVISOR.get(backbone, 32)

"""Dual-SimCLR (ISPRS 2022) and Dual-Swin (CVPR EarthVision 2022): one encoder per sensor; the co-located
S1/S2 patch is the positive pair."""

import keras
import tensorflow as tf

from sslrs_tf.losses.contrastive import nt_xent
from sslrs_tf.methods.base import SensorPairMethod
from sslrs_tf.models.encoders import feature_dim, is_encoder, make_encoder
from sslrs_tf.models.heads import projection_head


@keras.saving.register_keras_serializable(package="sslrs_tf")
class DualSimCLR(SensorPairMethod):
    """Two encoders (S1, S2), an MLP projection head each, NT-Xent over the 2N projections.

    No image augmentation: the two views are the two sensors. Negatives come
    from the global batch (all replicas). With Swin-T encoders this is Dual-Swin,
    whose research code applies the loss to the pooled vectors directly
    (``projection_dim=None``) at temperature 0.2.

    Args:
        backbone: ``"resnet18"`` (published), ``"resnet34"``, ``"resnet50"``, ``"resnet10"`` (quick runs),
            ``"swin_t"`` (Dual-Swin) or ``"swin_micro"`` (quick runs).
        s1_channels: S1 input channels (2).
        s2_channels: S2 input channels (13).
        projection_dim: output width of the projection heads (128), or None: no head, the
            loss sees the pooled vectors.
        temperature: NT-Xent temperature (0.07 for ResNets, 0.2 for Swin-T).
        sync_bn: BatchNorm statistics over the global batch (when built under a
            strategy with several replicas; with one they are the same thing).
        image_size: the input side a Swin is built for (224 for Swin-T); ignored by ResNets.

    Example:
    >>> from sslrs_tf.datasets import make_dataset
    >>> model = DualSimCLR("resnet18")
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-5))
    >>> model.fit(make_dataset("sen12ms", "train", crop_size=128, batch_size=200), steps_per_epoch=100)
    >>> dual_swin = DualSimCLR("swin_t", projection_dim=None, temperature=0.2, image_size=224)
    """

    def __init__(self, backbone="resnet18", s1_channels=2, s2_channels=13, projection_dim=128,
                 temperature=0.07, sync_bn=True, image_size=None, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
        if not is_encoder(backbone):
            raise ValueError(f"`backbone` must be a ResNet or a Swin. Received: backbone={backbone!r}")
        self.backbone, self.s1_channels, self.s2_channels = backbone, s1_channels, s2_channels
        self.projection_dim, self.temperature, self.sync_bn = projection_dim, temperature, sync_bn
        self.image_size = image_size
        dim = feature_dim(backbone)
        # With one replica, local statistics are the global ones: skip the all-reduce path.
        sync = sync_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
        self.encoder_s1 = make_encoder(backbone, s1_channels, sync, image_size, name="encoder_s1")
        self.encoder_s2 = make_encoder(backbone, s2_channels, sync, image_size, name="encoder_s2")
        self.head_s1 = self.head_s2 = None
        if projection_dim is not None:
            self.head_s1 = projection_head(dim, out_dim=projection_dim, name="head_s1")
            self.head_s2 = projection_head(dim, out_dim=projection_dim, name="head_s2")

    def call(self, inputs, training=False):
        """Projections (or pooled vectors) ``{"s1": [B, p], "s2": [B, p]}`` of a batch ``{"s1": ..., "s2": ...}``."""
        out = {}
        for m, encoder, head in (("s1", self.encoder_s1, self.head_s1), ("s2", self.encoder_s2, self.head_s2)):
            z = encoder(inputs[m], training=training)["pooled"]
            out[m] = z if head is None else head(z, training=training)
        return out

    def pair_loss(self, a, b, all_a, all_b, offset):
        return nt_xent(a, b, self.temperature, all_a, all_b, offset)

    @classmethod
    def from_model_config(cls, model, inputs):
        return cls(backbone=model.backbone, s1_channels=inputs.channels("s1"), s2_channels=inputs.channels("s2"),
                   projection_dim=model.projection_dim, temperature=model.temperature, sync_bn=model.sync_bn,
                   image_size=inputs.image_size)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "s1_channels": self.s1_channels,
                "s2_channels": self.s2_channels, "projection_dim": self.projection_dim,
                "temperature": self.temperature, "sync_bn": self.sync_bn, "image_size": self.image_size}

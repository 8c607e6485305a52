"""Dual-SimCLR (ISPRS 2022): one encoder per sensor; the co-located S1/S2 patch is the positive pair."""

import keras
import tensorflow as tf

from sslrs_tf.errors import UserError
from sslrs_tf.losses.contrastive import nt_xent
from sslrs_tf.methods.base import SensorPairMethod
from sslrs_tf.models.encoders import feature_dim, resnet_encoder
from sslrs_tf.models.heads import projection_head


@keras.saving.register_keras_serializable(package="sslrs_tf")
class DualSimCLR(SensorPairMethod):
    """Two encoders (S1, S2), an MLP projection head each, NT-Xent over the 2N projections.

    No image augmentation: the two views are the two sensors. Negatives come
    from the global batch (all replicas).

    Args:
        backbone: ``"resnet18"`` (published), ``"resnet34"``, ``"resnet50"`` or ``"resnet10"`` (quick runs).
        s1_channels: S1 input channels (2).
        s2_channels: S2 input channels (13).
        projection_dim: output width of the projection heads (128).
        temperature: NT-Xent temperature (0.07 for ResNets).
        sync_bn: BatchNorm statistics over the global batch (when built under a
            strategy with several replicas; with one they are the same thing).

    Example:
    >>> model = DualSimCLR("resnet18")
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-5))
    >>> model.fit(make_dataset("sen12ms", "train", crop_size=128, batch_size=200), steps_per_epoch=100)
    """

    def __init__(self, backbone="resnet18", s1_channels=2, s2_channels=13, projection_dim=128,
                 temperature=0.07, sync_bn=True, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
        self.backbone, self.s1_channels, self.s2_channels = backbone, s1_channels, s2_channels
        self.projection_dim, self.temperature, self.sync_bn = projection_dim, temperature, sync_bn
        dim = feature_dim(backbone)
        # With one replica, local statistics are the global ones: skip the all-reduce path.
        sync = sync_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
        self.encoder_s1 = resnet_encoder(backbone, s1_channels, sync, name="encoder_s1")
        self.encoder_s2 = resnet_encoder(backbone, s2_channels, sync, name="encoder_s2")
        self.head_s1 = projection_head(dim, out_dim=projection_dim, name="head_s1")
        self.head_s2 = projection_head(dim, out_dim=projection_dim, name="head_s2")

    def call(self, inputs, training=False):
        """Projections ``{"s1": [B, p], "s2": [B, p]}`` of a batch ``{"s1": ..., "s2": ...}``."""
        return {
            "s1": self.head_s1(self.encoder_s1(inputs["s1"], training=training)["pooled"], training=training),
            "s2": self.head_s2(self.encoder_s2(inputs["s2"], training=training)["pooled"], training=training),
        }

    def pair_loss(self, a, b, all_a, all_b, offset):
        return nt_xent(a, b, self.temperature, all_a, all_b, offset)

    @classmethod
    def from_run_config(cls, config, bands, pretrained=True):
        m = config.model
        if not m.backbone.startswith("resnet"):
            raise UserError(f"config: model.method dual_simclr has ResNet encoders (resnet10/18/34/50); "
                            f"received model.backbone {m.backbone!r}")
        return cls(backbone=m.backbone, s1_channels=len(bands["s1"]), s2_channels=len(bands["s2"]),
                   projection_dim=m.projection_dim, temperature=m.temperature, sync_bn=m.sync_bn)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "s1_channels": self.s1_channels,
                "s2_channels": self.s2_channels, "projection_dim": self.projection_dim,
                "temperature": self.temperature, "sync_bn": self.sync_bn}

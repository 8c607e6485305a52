"""MMA — multi-modal alignment (ISPRS 2022 baseline, after Windsor et al. 2021): VGG encoders, patch similarity."""

import keras
import tensorflow as tf

from sslrs_tf.losses.contrastive import patch_embedding, symmetric_info_nce
from sslrs_tf.methods.base import SensorPairMethod
from sslrs_tf.models.vgg import vgg_encoder


@keras.saving.register_keras_serializable(package="sslrs_tf")
class MMA(SensorPairMethod):
    """One VGG-style encoder per sensor; two patches are as similar as their aligned feature maps.

    The similarity of an S1 and an S2 patch is the mean over pixels of the cosine
    similarity of their feature maps at the same position (no pooling, no
    projection head), which asks the encoders to agree *where* things are, not
    only *what* the patch holds. Loss: symmetric InfoNCE over the global batch's
    S1 x S2 similarity matrix (rows and columns). No augmentation: the two views
    are the two sensors.

    Args:
        s1_channels, s2_channels: input channels per sensor (2, 13).
        embedding_dim: channels E of the last VGG block (256).
        temperature: InfoNCE temperature (0.1).
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.

    Example:
    >>> from sslrs_tf.datasets import make_dataset
    >>> model = MMA()
    >>> model.compile(optimizer=keras.optimizers.Adam(1e-4))
    >>> model.fit(make_dataset("sen12ms", "train", crop_size=128, batch_size=64), steps_per_epoch=100)
    """

    BACKBONES = ("vgg",)

    def __init__(self, s1_channels=2, s2_channels=13, embedding_dim=256, temperature=0.1, sync_bn=True, **kwargs):
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
        self.s1_channels, self.s2_channels, self.embedding_dim = s1_channels, s2_channels, embedding_dim
        self.temperature, self.sync_bn = temperature, sync_bn
        widths = (64, 128, 256, embedding_dim)
        # With one replica, local statistics are the global ones: skip the all-reduce path.
        sync = sync_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
        self.encoder_s1 = vgg_encoder(s1_channels, widths, sync, name="encoder_s1")
        self.encoder_s2 = vgg_encoder(s2_channels, widths, sync, name="encoder_s2")

    def call(self, inputs, training=False):
        """Patch embeddings ``{"s1": [B, d], "s2": [B, d]}`` (see :func:`patch_embedding`) of a batch."""
        return {m: patch_embedding(self.encoders()[m](inputs[m], training=training)["P3"]) for m in ("s1", "s2")}

    def pair_loss(self, a, b, all_a, all_b, offset):
        return symmetric_info_nce(a, b, self.temperature, all_a, all_b, offset)

    @classmethod
    def from_model_config(cls, model, inputs):
        return cls(s1_channels=inputs.channels("s1"), s2_channels=inputs.channels("s2"),
                   embedding_dim=model.embedding_dim, temperature=model.temperature, sync_bn=model.sync_bn)

    def get_config(self):
        return {**super().get_config(), "s1_channels": self.s1_channels, "s2_channels": self.s2_channels,
                "embedding_dim": self.embedding_dim, "temperature": self.temperature, "sync_bn": self.sync_bn}

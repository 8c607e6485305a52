"""SimCLR on S2 RGB (the ISPRS 2022 baseline): one encoder, two augmented views of each patch."""

import keras
import tensorflow as tf

from sslrs_tf.data.augment import augment
from sslrs_tf.errors import UserError
from sslrs_tf.losses.contrastive import nt_xent
from sslrs_tf.methods.base import ContrastiveMethod, gather, pair_metrics
from sslrs_tf.models.encoders import feature_dim, is_encoder, make_encoder
from sslrs_tf.models.heads import projection_head


@keras.saving.register_keras_serializable(package="sslrs_tf")
class SimCLR(ContrastiveMethod):
    """One encoder and projection head; NT-Xent between two augmented views of each S2 RGB patch.

    The views are made inside the training step (:func:`sslrs_tf.data.augment.augment`:
    random resized crop, flip, colour jitter, grey, blur), from seeds of the step and
    the replica. Negatives come from the global batch (all replicas). Input: S2
    B04, B03, B02 as reflectance scaled to [0, 1] (``data.normalization: fixed``);
    the research code converted reflectance to 8 bits with an overflow, not copied.

    Args:
        backbone: a ResNet (``"resnet18"``) or a Swin.
        channels: input channels (3: RGB; colour jitter and grey need 3).
        projection_dim: output of the projection head (128).
        temperature: NT-Xent temperature.
        strength: colour-jitter strength (SimCLR: 1.0 on ImageNet).
        crop_scale: the range of the random crops' area share (SimCLR: 0.08-1).
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.
        image_size: input side for a Swin encoder (ignored by ResNets).

    Example:
    >>> from sslrs_tf.datasets import make_dataset
    >>> model = SimCLR("resnet18")
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-5))
    >>> model.fit(make_dataset("sen12ms", "train", modalities=("s2",), bands={"s2": ("B04", "B03", "B02")},
    ...                        normalization="fixed", crop_size=128, batch_size=200))
    """

    METRICS = ("top1", "top5", "spread")
    INPUT_CHANNELS = {"s2": 3}  # colour jitter and grey work on RGB

    def __init__(self, backbone="resnet18", channels=3, projection_dim=128, temperature=0.07, strength=1.0,
                 crop_scale=(0.08, 1.0), sync_bn=True, image_size=None, **kwargs):
        super().__init__(**kwargs)
        if not is_encoder(backbone):
            raise ValueError(f"`backbone` must be a ResNet or a Swin. Received: backbone={backbone!r}")
        if temperature <= 0:
            raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
        self.backbone, self.channels, self.projection_dim = backbone, channels, projection_dim
        self.temperature, self.strength, self.sync_bn, self.image_size = temperature, strength, sync_bn, image_size
        self.crop_scale = tuple(crop_scale)
        sync = sync_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
        self.encoder = make_encoder(backbone, channels, sync, image_size, name="encoder_s2")
        self.head = projection_head(feature_dim(backbone), out_dim=projection_dim, name="head")

    def call(self, inputs, training=False):
        """Projections ``[B, p]`` of the (unaugmented) S2 patches."""
        return self.head(self.encoder(inputs["s2"], training=training)["pooled"], training=training)

    def views(self, images):
        """Two augmented views of a batch, from this step's seeds."""
        return [augment(images, s, self.strength, self.crop_scale, xla=bool(self.jit_compile))
                for s in self.augmentation_seeds(2)]

    def contrastive_step(self, inputs, training):
        if training:
            v1, v2 = self.views(inputs["s2"])
        else:  # validation: fixed seeds, so that epochs compare on the same views
            v1, v2 = (augment(inputs["s2"], tf.constant([0, s], tf.int64), self.strength, self.crop_scale,
                              xla=bool(self.jit_compile)) for s in (1, 2))
        a, all_a, offset = gather(self({"s2": v1}, training=training))
        b, all_b, _ = gather(self({"s2": v2}, training=training))
        return nt_xent(a, b, self.temperature, all_a, all_b, offset), pair_metrics(a, b, all_a, all_b, offset)

    def embed(self, inputs):
        raise UserError("cross-modal retrieval needs one encoder per sensor: SimCLR has one, on S2 RGB")

    def encoders(self):
        return {"s2": self.encoder}

    @classmethod
    def input_modalities(cls, model):
        return ("s2",)

    @classmethod
    def from_model_config(cls, model, inputs):
        return cls(backbone=model.backbone, channels=inputs.channels("s2"), projection_dim=model.projection_dim or 128,
                   temperature=model.temperature, sync_bn=model.sync_bn, image_size=inputs.image_size)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "channels": self.channels,
                "projection_dim": self.projection_dim, "temperature": self.temperature, "strength": self.strength, "crop_scale": list(self.crop_scale),
                "sync_bn": self.sync_bn, "image_size": self.image_size}

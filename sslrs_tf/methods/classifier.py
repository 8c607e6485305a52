"""Downstream land-cover classification: encoders, pooled features concatenated, one linear layer."""

import keras
from keras import ops

from sslrs_tf.data.labels import NUM_CLASSES
from sslrs_tf.methods.downstream import DownstreamMethod
from sslrs_tf.metrics import ConfusionMatrix, MultiLabelCounts
from sslrs_tf.models.encoders import feature_dim


@keras.saving.register_keras_serializable(package="sslrs_tf")
class Classifier(DownstreamMethod):
    """Pooled features of one or two encoders, concatenated, then one linear layer to the classes.

    Args:
        backbone: encoder architecture (``"resnet18"``, ``"resnet50"``, ``"swin_t"``, ``"vgg"``, ...;
            MMA's VGG encoders are pooled like the others).
        inputs: ``"only_s1"``, ``"only_s2"``, ``"early_fusion"`` or ``"late_fusion"``
            (see :mod:`sslrs_tf.methods.downstream`).
        label: ``"single"`` (softmax cross-entropy; metrics OA, AA) or ``"multi"``
            (sigmoid binary cross-entropy, threshold 0.5; metrics F1, O-F1).
        num_classes: number of classes (8 for DFC2020).
        s1_channels, s2_channels: input channels per sensor.
        freeze: keep the encoders fixed (weights and BatchNorm statistics): a linear probe.
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.
        image_size, adapters, embedding_dim: as for :class:`~sslrs_tf.methods.downstream.DownstreamMethod`.

    Example:
    >>> from sslrs_tf.datasets import make_dataset
    >>> from sslrs_tf.models.pretrained import load_encoders
    >>> model = Classifier("resnet18", inputs="late_fusion", label="single")
    >>> model.load_encoders(load_encoders("runs/dual_simclr", ("s1", "s2"), "per_sample_max", bands)[1])
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-6))
    >>> model.fit(make_dataset("dfc2020", "validation", label="single", crop_size=128), epochs=200)
    """

    LABELS = ("single", "multi")

    def __init__(self, backbone="resnet18", inputs="late_fusion", label="single", num_classes=NUM_CLASSES, **kwargs):
        if backbone not in self.BACKBONES:
            raise ValueError(f"`backbone` must be one of {', '.join(self.BACKBONES)}. Received: backbone={backbone!r}")
        super().__init__(backbone=backbone, inputs=inputs, label=label, num_classes=num_classes, **kwargs)
        self.head = keras.layers.Dense(num_classes, name="head")
        # Built now: every variable exists before the optimizers are built (Keras builds them
        # from the variables it finds at the first step).
        self.head.build((None, feature_dim(backbone, self.embedding_dim) * len(self.streams)))
        if self.label == "single":
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            self.task_metrics = [ConfusionMatrix(num_classes, "OA"), ConfusionMatrix(num_classes, "AA")]
        else:
            self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
            self.task_metrics = [MultiLabelCounts(num_classes, "F1"), MultiLabelCounts(num_classes, "O-F1")]

    def call(self, inputs, training=False):
        """Class logits ``[B, num_classes]`` (float32) of a batch ``{"s1": ..., "s2": ...}``."""
        pooled = [self.encoder_models[name](self.stream_input(inputs, name), training=training)["pooled"]
                  for name in self.streams]
        features = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)
        return ops.cast(self.head(features), "float32")

"""Downstream land-cover classification: encoders, pooled features concatenated, one linear layer.

The same class is every classifier of the papers' comparison:

=================  =======================  ==============================================
``inputs``         encoders                 as in the ISPRS 2022 tables
=================  =======================  ==============================================
``only_s1``        one, on S1 (2 ch)        OnlySen-1
``only_s2``        one, on S2 (13 ch)       OnlySen-2
``early_fusion``   one, on S1+S2 stacked    EarlyFusion (15 ch, S1 first)
``late_fusion``    one per sensor           LateFusion; with pretrained encoders: Dual-SimCLR
=================  =======================  ==============================================

From random initialisation these are the supervised baselines; with
``model.pretrained`` the encoders start from a pre-training run, either frozen
(``model.freeze: true``, a linear probe) or fine-tuned, optionally at their own
learning rate (``optimizer.encoder_lr``).
"""

import keras
from keras import ops

from sslrs_tf.data.labels import NUM_CLASSES
from sslrs_tf.errors import UserError
from sslrs_tf.evaluation.metrics import ConfusionMatrix, MultiLabelCounts
from sslrs_tf.methods.base import Method
from sslrs_tf.models.encoders import feature_dim, resnet_encoder

INPUTS = {
    # name: {encoder name: modalities it reads, in channel order}
    "only_s1": {"s1": ("s1",)},
    "only_s2": {"s2": ("s2",)},
    "early_fusion": {"s1s2": ("s1", "s2")},
    "late_fusion": {"s1": ("s1",), "s2": ("s2",)},
}
LABELS = ("single", "multi")


@keras.saving.register_keras_serializable(package="sslrs_tf")
class Classifier(Method):
    """Pooled features of one or two encoders, concatenated, then one linear layer to the classes.

    Args:
        backbone: encoder architecture (``"resnet18"``, ``"resnet50"``, ...).
        inputs: ``"only_s1"``, ``"only_s2"``, ``"early_fusion"`` or ``"late_fusion"`` (see the module docstring).
        label: ``"single"`` (softmax cross-entropy; metrics OA, AA) or ``"multi"``
            (sigmoid binary cross-entropy, threshold 0.5; metrics F1, O-F1).
        num_classes: number of classes (8 for DFC2020).
        s1_channels, s2_channels: input channels per sensor.
        freeze: keep the encoders fixed (weights and BatchNorm statistics): a linear probe.
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.

    Example:
    >>> model = Classifier("resnet18", inputs="late_fusion", label="single")
    >>> model.load_encoders(load_encoders("runs/dual_simclr", ("s1", "s2"), "per_sample_max", bands)[1])
    >>> model.compile(optimizer=keras.optimizers.Adam(3e-6))
    >>> model.fit(make_dataset("dfc2020", "validation", label="single", crop_size=128), epochs=200)
    """

    def __init__(self, backbone="resnet18", inputs="late_fusion", label="single", num_classes=NUM_CLASSES,
                 s1_channels=2, s2_channels=13, freeze=False, sync_bn=True, **kwargs):
        super().__init__(**kwargs)
        if inputs not in INPUTS:
            raise ValueError(f"`inputs` must be one of {', '.join(INPUTS)}. Received: inputs={inputs!r}")
        if label not in LABELS:
            raise ValueError(f"`label` must be one of {', '.join(LABELS)}. Received: label={label!r}")
        self.backbone, self.inputs_kind, self.label, self.num_classes = backbone, inputs, label, num_classes
        self.s1_channels, self.s2_channels, self.freeze, self.sync_bn = s1_channels, s2_channels, freeze, sync_bn
        channels = {"s1": s1_channels, "s2": s2_channels}
        self.streams = INPUTS[inputs]
        self.encoder_models = {
            name: resnet_encoder(backbone, sum(channels[m] for m in mods), sync_bn, name=f"encoder_{name}")
            for name, mods in self.streams.items()
        }
        for encoder in self.encoder_models.values():
            encoder.trainable = not freeze
        self.head = keras.layers.Dense(num_classes, name="head")
        # Built now: every variable exists before the optimizers are built (Keras builds them
        # from the variables it finds at the first step).
        self.head.build((None, feature_dim(backbone) * len(self.streams)))
        if label == "single":
            self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            self.task_metrics = [ConfusionMatrix(num_classes, "OA"), ConfusionMatrix(num_classes, "AA")]
        else:
            self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
            self.task_metrics = [MultiLabelCounts(num_classes, "F1"), MultiLabelCounts(num_classes, "O-F1")]

    def call(self, inputs, training=False):
        """Class logits ``[B, num_classes]`` (float32) of a batch ``{"s1": ..., "s2": ...}``."""
        pooled = []
        for name, mods in self.streams.items():
            x = ops.concatenate([ops.cast(inputs[m], self.compute_dtype) for m in mods], axis=-1)
            pooled.append(self.encoder_models[name](x, training=training)["pooled"])
        features = pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)
        return ops.cast(self.head(features), "float32")

    def streaming_metrics(self):
        return self.task_metrics

    def loss_and_values(self, data, training):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=training)
        for metric in self.task_metrics:
            metric.update_state(y, logits)
        return self.loss_fn(y, logits), {}

    def encoders(self):
        return dict(self.encoder_models)

    def encoder_variables(self):
        return [v for e in self.encoder_models.values() for v in e.trainable_variables]

    def load_encoders(self, encoders):
        """Copies pretrained weights into the encoders, by modality (``{"s1": model, "s2": model}``)."""
        for name, encoder in self.encoder_models.items():
            if name not in encoders:
                raise UserError(f"model.pretrained: no {name} encoder to start inputs={self.inputs_kind} from "
                                "(early_fusion has no pretrained counterpart)")
            try:
                encoder.set_weights(encoders[name].get_weights())
            except ValueError as err:
                raise UserError(f"model.pretrained: the {name} encoder does not fit model.backbone "
                                f"{self.backbone}: {str(err).splitlines()[0]}") from None

    @classmethod
    def from_run_config(cls, config, bands, pretrained=True):
        """Built from a run config; `pretrained=False` skips loading the start weights (evaluation reloads all weights)."""
        from sslrs_tf.models.pretrained import load_encoders

        m, d = config.model, config.data
        if d.label not in LABELS:
            raise UserError(f"config: model.method classifier needs data.label single or multi; received {d.label!r}")
        if m.freeze and not m.pretrained:
            raise UserError("config: model.freeze needs model.pretrained (frozen random encoders learn nothing)")
        if config.optimizer.encoder_lr is not None and config.train.mixed_precision == "mixed_float16":
            raise UserError("config: optimizer.encoder_lr with train.mixed_precision mixed_float16 is not supported "
                            "(two optimizers cannot share one loss scale); use mixed_bfloat16 or one learning rate")
        model = cls(backbone=m.backbone, inputs=m.inputs, label=d.label, s1_channels=len(bands["s1"]),
                    s2_channels=len(bands["s2"]), freeze=m.freeze, sync_bn=m.sync_bn)
        if m.pretrained and pretrained:
            modalities = tuple(model.streams)
            if "s1s2" in modalities:
                raise UserError("config: model.pretrained with model.inputs early_fusion: pre-training gives one "
                                "encoder per sensor; use late_fusion, only_s1 or only_s2")
            _, encoders = load_encoders(m.pretrained, modalities, d.normalization, bands, m.backbone)
            model.load_encoders(encoders)
        return model

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "inputs": self.inputs_kind, "label": self.label,
                "num_classes": self.num_classes, "s1_channels": self.s1_channels, "s2_channels": self.s2_channels,
                "freeze": self.freeze, "sync_bn": self.sync_bn}

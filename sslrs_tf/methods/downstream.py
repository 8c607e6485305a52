"""What the downstream models share: encoders per input stream, pretrained start, freezing.

``model.inputs`` picks the papers' variants:

=================  =======================  ==============================================
``inputs``         encoders                 as in the ISPRS 2022 tables
=================  =======================  ==============================================
``only_s1``        one, on S1 (2 ch)        OnlySen-1
``only_s2``        one, on S2 (13 ch)       OnlySen-2
``early_fusion``   one, on S1+S2 stacked    EarlyFusion (15 ch, S1 first)
``late_fusion``    one per sensor           LateFusion; with pretrained encoders: Dual-SimCLR
=================  =======================  ==============================================

``fusion_only_s1`` and ``fusion_only_s2`` feed one sensor to an encoder of S1+S2 stacked, the
other sensor's bands zero: a MoCo (partial) fusion run's encoder on one sensor, as the SEN12MS
MoCo work evaluates it (zero is the dataset mean of a z-scored band).

From random initialisation these are the supervised baselines; with
``model.pretrained`` the encoders start from a pre-training run, either frozen
(``model.freeze: true``, a linear probe) or fine-tuned, optionally at their own
learning rate (``optimizer.encoder_lr``). Any pre-training method's encoders can start
them: an encoder is built here exactly as its method built it (a ResNet, a Swin, MMA's
VGG, with or without MoCo's 1x1 adapter), and a stream takes the pre-trained encoder of
its own name (``s1``, ``s2``, or ``s1s2`` for MoCo fusion's stacked input, which starts
``early_fusion``).
"""

import keras
import tensorflow as tf
from keras import ops

from sslrs_tf.data.labels import NUM_CLASSES
from sslrs_tf.methods.base import Method
from sslrs_tf.models.encoders import BACKBONES, ENCODERS, copy_encoder_weights, freeze_resnet_stages, make_encoder

INPUTS = {
    # name: {encoder name: modalities it reads, in channel order}
    "only_s1": {"s1": ("s1",)},
    "only_s2": {"s2": ("s2",)},
    "early_fusion": {"s1s2": ("s1", "s2")},
    "late_fusion": {"s1": ("s1",), "s2": ("s2",)},
    # "zeros:<sensor>": that sensor's channels, all zero (the sensor is not read)
    "fusion_only_s1": {"s1s2": ("s1", "zeros:s2")},
    "fusion_only_s2": {"s1s2": ("zeros:s1", "s2")},
}


def stream_sensor(part):
    """The sensor of an entry of :data:`INPUTS` (``"zeros:s2"`` -> ``"s2"``) and whether it is read."""
    return part.split(":")[-1], not part.startswith("zeros:")


class DownstreamMethod(Method):
    """Base of the downstream models (see the module docstring).

    Subclasses set ``LABELS`` (the label kinds they accept), build their head in
    ``__init__`` after calling this one, and implement ``call``; they set
    ``self.loss_fn`` and ``self.task_metrics``.

    Args:
        backbone: encoder architecture (``"resnet18"``, ``"resnet50"``, ``"swin_t"``, ``"vgg"``, ...).
        inputs: ``"only_s1"``, ``"only_s2"``, ``"early_fusion"`` or ``"late_fusion"``.
        label: the label kind (one of the subclass's ``LABELS``).
        num_classes: number of classes (8 for DFC2020).
        s1_channels, s2_channels: input channels per sensor.
        freeze: keep the encoders fixed (weights and BatchNorm statistics).
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.
        image_size: the input side a Swin encoder is built for; ignored by the others.
        adapters: each encoder starts with the MoCo work's 1x1 adapter to 3 channels (as MoCo's
            encoders with ``adapters=True``).
        embedding_dim: ``backbone="vgg"``: channels of the last block (MMA's E).
        pretrained_adapters: what :meth:`load_encoders` does with a pre-trained encoder's 1x1 adapter
            (:func:`~sslrs_tf.models.encoders.copy_encoder_weights`): ``"keep"`` it (the MoCo work's
            Moco_1x1), start the adapter ``"random"`` (Moco_1x1Rnd), or ``"drop"`` it and read the
            input directly (Moco).
        freeze_stages: keep the first k of a ResNet's five stages fixed (stem, then the four residual
            stages; :func:`~sslrs_tf.models.encoders.freeze_resnet_stages`), 0: none.
    """

    LABELS = ()
    BACKBONES = (*ENCODERS, "vgg")

    def __init__(self, backbone="resnet18", inputs="late_fusion", label=None, num_classes=NUM_CLASSES,
                 s1_channels=2, s2_channels=13, freeze=False, sync_bn=True, image_size=None, adapters=False,
                 embedding_dim=256, pretrained_adapters="keep", freeze_stages=0, **kwargs):
        super().__init__(**kwargs)
        label = label or self.LABELS[0]
        if inputs not in INPUTS:
            raise ValueError(f"`inputs` must be one of {', '.join(INPUTS)}. Received: inputs={inputs!r}")
        if label not in self.LABELS:
            raise ValueError(f"`label` must be one of {', '.join(self.LABELS)}. Received: label={label!r}")
        self.backbone, self.inputs_kind, self.label, self.num_classes = backbone, inputs, label, num_classes
        self.s1_channels, self.s2_channels, self.freeze, self.sync_bn = s1_channels, s2_channels, freeze, sync_bn
        self.image_size, self.adapters, self.embedding_dim = image_size, adapters, embedding_dim
        self.pretrained_adapters, self.freeze_stages = pretrained_adapters, freeze_stages
        if freeze_stages and backbone not in BACKBONES:
            raise ValueError(f"`freeze_stages` applies to ResNets. Received: backbone={backbone!r}")
        self.streams = INPUTS[inputs]
        self.encoder_models = {
            name: make_encoder(backbone, self.stream_channels(name), sync_bn, image_size, name=f"encoder_{name}",
                               adapter=adapters, embedding_dim=embedding_dim)
            for name in self.streams
        } if backbone in self.BACKBONES and backbone != "unet" else {}
        for encoder in self.encoder_models.values():
            encoder.trainable = not freeze
            if freeze_stages and not freeze:
                freeze_resnet_stages(encoder, freeze_stages)

    def stream_channels(self, name):
        """Input channels of the encoder of stream `name`."""
        channels = {"s1": self.s1_channels, "s2": self.s2_channels}
        return sum(channels[stream_sensor(m)[0]] for m in self.streams[name])

    def stream_input(self, inputs, name):
        """The input of stream `name`: its sensors' channels concatenated (S1 first); a sensor it does not read
        (``zeros:``) as that many channels of zeros."""
        channels = {"s1": self.s1_channels, "s2": self.s2_channels}
        read = [stream_sensor(m)[0] for m in self.streams[name] if stream_sensor(m)[1]]
        like = inputs[read[0]]
        parts = []
        for m in self.streams[name]:
            sensor, is_read = stream_sensor(m)
            if is_read:
                parts.append(ops.cast(inputs[sensor], self.compute_dtype))
            else:
                shape = tf.concat([tf.shape(like)[:3], [channels[sensor]]], axis=0)
                parts.append(tf.zeros(shape, self.compute_dtype))
        return ops.concatenate(parts, axis=-1)

    def streaming_metrics(self):
        return self.task_metrics

    def loss_and_values(self, data, training):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        logits = self(x, training=training)
        for metric in self.task_metrics:
            metric.update_state(y, logits)
        # Keras' losses divide by the replica count under tf.distribute (its own trainer divides no
        # further); train_step divides the loss by it, as for every method, so Keras' share is undone here.
        # Without this, two replicas took half the gradient of one device.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return self.loss_fn(y, logits) * replicas, {}

    def encoders(self):
        return dict(self.encoder_models)

    def encoder_variables(self):
        return [v for e in self.encoder_models.values() for v in e.trainable_variables]

    def load_encoders(self, encoders):
        """Copies pretrained weights into the encoders, by stream (``{"s1": model, "s2": model}``).

        Raises:
            ValueError: an encoder is missing, or its weights do not fit (the message names it).
        """
        for name, encoder in self.encoder_models.items():
            if name not in encoders:
                raise ValueError(f"no {name} encoder to start inputs={self.inputs_kind} from (there are "
                                 f"{', '.join(sorted(encoders))})")
            try:
                copy_encoder_weights(encoders[name], encoder, self.pretrained_adapters)
            except ValueError as err:
                raise ValueError(f"the {name} encoder does not fit backbone {self.backbone}: "
                                 f"{str(err).splitlines()[0]}") from None

    @classmethod
    def input_modalities(cls, model):
        used = {stream_sensor(m)[0] for stream in INPUTS[model.inputs].values() for m in stream if stream_sensor(m)[1]}
        return tuple(m for m in ("s1", "s2") if m in used)

    @classmethod
    def from_model_config(cls, model, inputs):
        """Built from a run config's ``model`` section; the encoders start from random weights (the
        experiment loads ``model.pretrained`` into them, see :meth:`load_encoders`)."""
        return cls(backbone=model.backbone, inputs=model.inputs, label=inputs.label, num_classes=inputs.num_classes,
                   s1_channels=inputs.channels("s1"), s2_channels=inputs.channels("s2"), freeze=model.freeze,
                   sync_bn=model.sync_bn, image_size=inputs.image_size, adapters=model.adapters,
                   embedding_dim=model.embedding_dim, pretrained_adapters=model.pretrained_adapters,
                   freeze_stages=model.freeze_stages)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "inputs": self.inputs_kind, "label": self.label,
                "num_classes": self.num_classes, "s1_channels": self.s1_channels, "s2_channels": self.s2_channels,
                "freeze": self.freeze, "sync_bn": self.sync_bn, "image_size": self.image_size,
                "adapters": self.adapters, "embedding_dim": self.embedding_dim,
                "pretrained_adapters": self.pretrained_adapters, "freeze_stages": self.freeze_stages}

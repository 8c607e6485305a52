"""MoCo-v2 with sensor-based positive pairs (the SEN12MS MoCo work), and its "fusion" variant."""

import keras
import tensorflow as tf

from sslrs_tf.data.augment import augment
from sslrs_tf.errors import UserError
from sslrs_tf.losses.contrastive import embedding_spread, l2_normalize, moco_info_nce, queue_logits
from sslrs_tf.methods.base import ContrastiveMethod, gather
from sslrs_tf.models.encoders import feature_dim, is_encoder, make_encoder
from sslrs_tf.models.heads import projection_head

MODES = ("sensor", "fusion")


def unit_rows(shape, dtype=None):
    """Random unit-norm rows: MoCo's initial queue (random keys until real ones arrive)."""
    x = keras.random.normal(shape, dtype=dtype or "float32")
    return x / keras.ops.norm(x, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="sslrs_tf")
class MoCo(ContrastiveMethod):
    """MoCo-v2: a query encoder trained by gradient, a key encoder that follows it by momentum, a queue of keys.

    ``mode="sensor"``: the query is the S2 patch, its positive key the co-located S1
    patch; the queue holds S1 keys of earlier batches. ``mode="fusion"``: S1 and S2
    stacked into one image, two augmented views of it (made inside the training
    step, :func:`sslrs_tf.data.augment.augment`) are query and key.

    Each network is [optional 1x1 conv -> BN -> ReLU adapter to 3 channels] -> encoder
    -> MLP neck ``d -> d -> projection_dim``. The key network's encoder and neck are
    exponential moving averages of the query's (``momentum``), updated after each
    optimizer step; keys enter the queue after the loss is computed. Under a
    distribution strategy the keys of all replicas are gathered first, so every
    replica enqueues the same global batch in the same order and queue and key
    encoder stay identical across replicas. A skipped (non-finite) batch changes
    neither.

    Key-side weights with no same-shaped query counterpart cannot follow by momentum:
    in sensor mode the S1 adapter (or, without adapters, the S1 encoder's first
    convolution). MoCo computes keys without gradient, which would leave them at
    their random start; here they are trained by gradient through the key path
    instead (our choice: the seeds do not say how the released code treats them).
    No shuffling BN: the encoders' BatchNorm is synchronised over replicas (``sync_bn``)
    as everywhere in this library.

    Args:
        backbone: the encoder (``"resnet50"`` as published; any ResNet or Swin).
        mode: ``"sensor"`` or ``"fusion"``.
        s1_channels, s2_channels: input channels (2, and 10 in the MoCo work).
        adapters: put the trainable 1x1 adapters to 3 channels before the encoders.
        projection_dim: output of the MLP neck (128).
        queue_size: keys in the queue (65 536).
        momentum: key-encoder momentum (0.999).
        temperature: softmax temperature (0.2).
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.
        image_size: input side for a Swin encoder (ignored by ResNets).

    Example:
    >>> from sslrs_tf.datasets import make_dataset
    >>> model = MoCo("resnet50", mode="sensor")
    >>> model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9))
    >>> model.fit(make_dataset("sen12ms", "train", bands={"s2": S2_10}, crop_size=128, batch_size=256))
    """

    METRICS = ("top1", "spread")

    def __init__(self, backbone="resnet50", mode="sensor", s1_channels=2, s2_channels=10, adapters=True,
                 projection_dim=128, queue_size=65536, momentum=0.999, temperature=0.2, sync_bn=True,
                 image_size=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {', '.join(MODES)}. Received: mode={mode!r}")
        if not is_encoder(backbone):
            raise ValueError(f"`backbone` must be a ResNet or a Swin. Received: backbone={backbone!r}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"`momentum` must be in [0, 1]. Received: momentum={momentum}")
        if queue_size < 1 or temperature <= 0:
            raise ValueError(f"`queue_size` and `temperature` must be positive. "
                             f"Received: queue_size={queue_size}, temperature={temperature}")
        self.backbone, self.mode, self.s1_channels, self.s2_channels = backbone, mode, s1_channels, s2_channels
        self.adapters, self.projection_dim, self.queue_size = adapters, projection_dim, queue_size
        self.momentum, self.temperature, self.sync_bn, self.image_size = momentum, temperature, sync_bn, image_size
        sync = sync_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
        q_channels, k_channels = (s2_channels, s1_channels) if mode == "sensor" else (s1_channels + s2_channels,) * 2
        self.encoder_q, q_parts = self._encoder(q_channels, sync, "encoder_q")
        self.encoder_k, k_parts = self._encoder(k_channels, sync, "encoder_k")
        dim = feature_dim(backbone)
        self.neck_q = projection_head(dim, dim, projection_dim, name="neck_q")
        self.neck_k = projection_head(dim, dim, projection_dim, name="neck_k")
        q_parts.append(self.neck_q)
        k_parts.append(self.neck_k)
        if mode == "sensor" and adapters:  # different sensors' adapters: nothing to follow
            q_parts, k_parts = q_parts[1:], k_parts[1:]
        self.momentum_pairs = [(k, q) for kp, qp in zip(k_parts, q_parts)
                               for k, q in zip(kp.trainable_weights, qp.trainable_weights) if k.shape == q.shape]
        followers = {id(k) for k, _ in self.momentum_pairs}
        #: key-side weights trained by gradient (see the class docstring)
        self.key_trained = [v for v in self.encoder_k.trainable_weights if id(v) not in followers]
        for k, q in self.momentum_pairs:
            k.assign(q)
        self.queue = self.add_weight(shape=(queue_size, projection_dim), initializer=unit_rows, trainable=False,
                                     name="queue")
        self.queue_ptr = self.add_weight(shape=(), initializer="zeros", dtype="int32", trainable=False,
                                         name="queue_ptr")

    def _encoder(self, channels, sync, name):
        """[adapter ->] encoder as one model (what is exported, and what a downstream model rebuilds with
        :func:`~sslrs_tf.models.encoders.make_encoder`), and its parts in order."""
        if self.adapters:
            encoder = make_encoder(self.backbone, channels, sync, self.image_size, name=name, adapter=True)
            return encoder, [layer for layer in encoder.layers if isinstance(layer, keras.Model)]
        inputs = keras.Input((self.image_size, self.image_size, channels), name="image")
        net = make_encoder(self.backbone, channels, sync, self.image_size, name=f"{name}_backbone")
        return keras.Model(inputs, net(inputs), name=name), [net]

    def _views(self, inputs, training):
        """Query and key images of a batch."""
        if self.mode == "sensor":
            return inputs["s2"], inputs["s1"]
        stacked = tf.concat([tf.cast(inputs["s1"], "float32"), tf.cast(inputs["s2"], "float32")], axis=-1)
        if not training:
            return stacked, stacked
        seeds = self.augmentation_seeds(2)
        return tuple(augment(stacked, s, crop_scale=(0.2, 1.0), xla=bool(self.jit_compile)) for s in seeds)

    def _project(self, encoder, neck, x, training):
        return l2_normalize(neck(encoder(x, training=training)["pooled"], training=training))

    def call(self, inputs, training=False):
        """Unit-norm query and key projections ``{"query": [B, p], "key": [B, p]}`` (no augmentation)."""
        xq, xk = self._views(inputs, training=False)
        return {"query": self._project(self.encoder_q, self.neck_q, xq, training),
                "key": self._project(self.encoder_k, self.neck_k, xk, training)}

    def training_forward(self, data):
        inputs, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        xq, xk = self._views(inputs, training=True)
        q = self._project(self.encoder_q, self.neck_q, xq, True)
        k = self._project(self.encoder_k, self.neck_k, xk, True)
        if not self.key_trained:
            k = tf.stop_gradient(k)  # nothing on the key side learns: skip its backward pass
        queue = tf.convert_to_tensor(self.queue)
        loss = moco_info_nce(q, k, queue, self.temperature)
        logits = queue_logits(q, tf.stop_gradient(k), queue, self.temperature)
        values = {"top1": tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1), 0), "float32")),
                  "spread": embedding_spread(q)}
        _, all_k, _ = gather(tf.stop_gradient(k))
        return loss, values, all_k

    def contrastive_step(self, inputs, training):
        loss, values, _ = self.training_forward(inputs) if training else self._evaluation_step(inputs)
        return loss, values

    def _evaluation_step(self, inputs):
        z = self(inputs, training=False)
        queue = tf.convert_to_tensor(self.queue)
        logits = queue_logits(z["query"], z["key"], queue, self.temperature)
        top1 = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1), 0), "float32"))
        return moco_info_nce(z["query"], z["key"], queue, self.temperature), \
            {"top1": top1, "spread": embedding_spread(z["query"])}, None

    def after_update(self, keys):
        """Key encoder and neck one momentum step towards the query's; the global batch's keys into the queue."""
        m = self.momentum
        for k, q in self.momentum_pairs:
            k.assign(m * k + (1.0 - m) * q)
        n = tf.shape(keys)[0]
        ptr = tf.convert_to_tensor(self.queue_ptr)
        rows = tf.math.floormod(ptr + tf.range(n), self.queue_size)
        self.queue.value.scatter_update(tf.IndexedSlices(tf.cast(keys, self.queue.dtype), rows))
        self.queue_ptr.assign(tf.math.floormod(ptr + n, self.queue_size))

    def optimizer_groups(self):
        followers = {id(k) for k, _ in self.momentum_pairs}
        return [(o, [v for v in vs if id(v) not in followers]) for o, vs in super().optimizer_groups()]

    def embed(self, inputs):
        if self.mode != "sensor":
            raise UserError("cross-modal retrieval needs one encoder per sensor: MoCo fusion has one for both")
        z = self(inputs, training=False)
        return {"s2": z["query"], "s1": z["key"]}

    def encoders(self):
        if self.mode == "sensor":
            return {"s2": self.encoder_q, "s1": self.encoder_k}
        return {"s1s2": self.encoder_q}

    @classmethod
    def from_model_config(cls, model, inputs):
        return cls(backbone=model.backbone, mode=model.method.split("_", 1)[1], s1_channels=inputs.channels("s1"),
                   s2_channels=inputs.channels("s2"), adapters=model.adapters,
                   projection_dim=model.projection_dim or 128, queue_size=model.queue_size,
                   momentum=model.momentum, temperature=model.temperature, sync_bn=model.sync_bn,
                   image_size=inputs.image_size)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "mode": self.mode,
                "s1_channels": self.s1_channels, "s2_channels": self.s2_channels, "adapters": self.adapters,
                "projection_dim": self.projection_dim, "queue_size": self.queue_size, "momentum": self.momentum,
                "temperature": self.temperature, "sync_bn": self.sync_bn, "image_size": self.image_size}


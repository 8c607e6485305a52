"""MoCo-v2 as the SEN12MS MoCo work runs it: on one sensor, on sensor-based pairs, and on fused S1/S2 images."""

import keras
import tensorflow as tf

from sslrs_tf.data.augment import MOCO_AUGMENTATIONS, moco_view
from sslrs_tf.errors import UserError
from sslrs_tf.losses.contrastive import embedding_spread, l2_normalize, moco_info_nce, queue_logits
from sslrs_tf.methods.base import ContrastiveMethod, gather
from sslrs_tf.models.encoders import feature_dim, is_encoder, make_encoder
from sslrs_tf.models.heads import projection_head

#: ``mode``: what query and key are (the registry's method names are ``moco_<mode>``)
MODES = ("single", "sensor", "fusion", "partial_fusion")
#: the augmentation of each mode when none is given: sensor pairs are views already; the others need two
DEFAULT_AUGMENTATION = {"single": "flips_blur_elastic", "sensor": "none", "fusion": "set3", "partial_fusion": "set3"}
#: the sensor a ``single`` model reads, by the downstream ``model.inputs`` naming it
SINGLE_INPUTS = {"only_s1": "s1", "only_s2": "s2"}


def unit_rows(shape, dtype=None):
    """Random unit-norm rows: MoCo's initial queue (random keys until real ones arrive)."""
    x = keras.random.normal(shape, dtype=dtype or "float32")
    return x / keras.ops.norm(x, axis=-1, keepdims=True)


def partial_fusion_masks(seed, batch):
    """``[batch]`` kinds of the partial-fusion images: 0 S1 only, 1 S2 only, 2 both, in equal thirds, shuffled
    by `seed` (a batch not divisible by 3 gets one or two more of kinds the seed picks, so that over replicas
    and steps no kind is favoured)."""
    first, second = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, "int64"), 2), axis=0)
    offset = tf.random.stateless_uniform([], first, 0, 3, dtype=tf.int32)
    order = tf.argsort(tf.random.stateless_uniform([batch], second))
    return tf.gather((tf.range(batch) + offset) % 3, order)


def partial_fusion(stacked, kinds, s1_channels):
    """The stacked S1/S2 images (S1's `s1_channels` first) with the bands of the sensor each lacks set to zero:
    `kinds` as :func:`partial_fusion_masks` draws them. Zero is the mean of a z-scored band (the work's
    normalisation)."""
    keep_s1 = tf.cast(kinds != 1, stacked.dtype)[:, None, None, None]
    keep_s2 = tf.cast(kinds != 0, stacked.dtype)[:, None, None, None]
    return tf.concat([stacked[..., :s1_channels] * keep_s1, stacked[..., s1_channels:] * keep_s2], axis=-1)


@keras.saving.register_keras_serializable(package="sslrs_tf")
class MoCo(ContrastiveMethod):
    """MoCo-v2: a query encoder trained by gradient, a key encoder that follows it by momentum, a queue of keys.

    The scenarios of the SEN12MS MoCo work, by `mode`:

    * ``"single"``: MoCo-v2 as published, on one sensor (`sensor`): query and key are two
      augmented views of the same patch.
    * ``"sensor"``: sensor-based pairs: the query is the S2 patch, its positive key the
      co-located S1 patch; the queue holds S1 keys. With an `augmentation`, each sensor's
      patch is augmented on its own (the work's third scenario).
    * ``"fusion"`` ("all fusion"): S1 and S2 stacked into one image; two augmented views of it
      are query and key.
    * ``"partial_fusion"``: as fusion, but a third of each batch shows only S1, a third only S2
      (the other sensor's bands zero, see :func:`partial_fusion`) and a third both, so that one
      encoder learns from S1, S2 and S1/S2 images equally.

    Views are made inside the training step (:func:`sslrs_tf.data.augment.moco_view`).
    Each network is [optional 1x1 conv -> BN -> ReLU adapter to 3 channels] -> encoder
    -> MLP neck ``d -> d -> projection_dim``. The adapters are fixed at their random start
    unless `adapter_trainable` ("the weights of this layer are not updated during
    training", in the work's words): the whole adapter is then fixed, and its BatchNorm
    normalises with its initial statistics (mean 0, variance 1), so it passes the
    convolution's output on unchanged. Where query and key read the same kind of image, the
    key's adapter is a copy of the query's. The key network's encoder and neck are
    exponential moving averages of the query's (`momentum`), updated after each optimizer
    step; keys enter the queue after the loss is computed. Under a distribution strategy the
    keys of all replicas are gathered first, so every replica enqueues the same global batch
    in the same order and queue and key encoder stay identical across replicas. A skipped
    (non-finite) batch changes neither.

    Key-side weights with no same-shaped query counterpart cannot follow by momentum: in
    sensor mode a trainable S1 adapter (or, without adapters, the S1 encoder's first
    convolution). MoCo computes keys without gradient, which would leave them at their random
    start; here they are trained by gradient through the key path instead (our choice: the
    sources do not say how the released code treats them). No shuffling BN: the encoders'
    BatchNorm is synchronised over replicas (``sync_bn``) as everywhere in this library.

    Args:
        backbone: the encoder (``"resnet50"`` as published; any ResNet or Swin).
        mode: one of :data:`MODES`.
        s1_channels, s2_channels: input channels (2, and 10 in the MoCo work).
        adapters: put the 1x1 adapters to 3 channels before the encoders.
        adapter_trainable: train the adapters by gradient (default: fixed, as in the work).
        projection_dim: output of the MLP neck (128).
        queue_size: keys in the queue (65 536).
        momentum: key-encoder momentum (the work states 0.9; MoCo-v2's own default is 0.999).
        temperature: softmax temperature (0.2).
        augmentation: a name of :data:`~sslrs_tf.data.augment.MOCO_AUGMENTATIONS`; None: the
            mode's default (:data:`DEFAULT_AUGMENTATION`). ``"none"`` only for sensor pairs.
        sensor: ``"single"`` mode: the sensor it reads (``"s1"`` or ``"s2"``).
        sync_bn: BatchNorm statistics over the global batch under a multi-replica strategy.
        image_size: input side for a Swin encoder (ignored by ResNets).

    Example:
    >>> from sslrs_tf.datasets import make_dataset
    >>> model = MoCo("resnet50", mode="sensor", momentum=0.9)
    >>> model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9))
    >>> model.fit(make_dataset("sen12ms", "train", bands={"s2": S2_10}, crop_size=128, batch_size=64))
    """

    METRICS = ("top1", "spread")

    def __init__(self, backbone="resnet50", mode="sensor", s1_channels=2, s2_channels=10, adapters=True,
                 adapter_trainable=False, projection_dim=128, queue_size=65536, momentum=0.999, temperature=0.2,
                 augmentation=None, sensor="s2", sync_bn=True, image_size=None, **kwargs):
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
        if augmentation is not None and augmentation not in MOCO_AUGMENTATIONS:
            raise ValueError(f"`augmentation` must be one of {', '.join(MOCO_AUGMENTATIONS)}. "
                             f"Received: augmentation={augmentation!r}")
        if augmentation == "none" and mode != "sensor":
            raise ValueError(f"mode {mode!r} makes query and key from one image: it needs an `augmentation`. "
                             f"Received: augmentation='none'")
        if sensor not in ("s1", "s2"):
            raise ValueError(f"`sensor` must be 's1' or 's2'. Received: sensor={sensor!r}")
        self.backbone, self.mode, self.s1_channels, self.s2_channels = backbone, mode, s1_channels, s2_channels
        self.adapters, self.adapter_trainable = adapters, adapter_trainable
        self.projection_dim, self.queue_size = projection_dim, queue_size
        self.momentum, self.temperature, self.sync_bn, self.image_size = momentum, temperature, sync_bn, image_size
        self.augmentation, self.sensor = augmentation, sensor
        sync = sync_bn and tf.distribute.get_strategy().num_replicas_in_sync > 1
        channels = {"s1": s1_channels, "s2": s2_channels}
        q_channels, k_channels = {"single": (channels[sensor],) * 2, "sensor": (s2_channels, s1_channels)}.get(
            mode, (s1_channels + s2_channels,) * 2)
        self.encoder_q, q_parts = self._encoder(q_channels, sync, "encoder_q")
        self.encoder_k, k_parts = self._encoder(k_channels, sync, "encoder_k")
        dim = feature_dim(backbone)
        self.neck_q = projection_head(dim, dim, projection_dim, name="neck_q")
        self.neck_k = projection_head(dim, dim, projection_dim, name="neck_k")
        q_parts.append(self.neck_q)
        k_parts.append(self.neck_k)
        if adapters:
            q_adapter, k_adapter = q_parts[0], k_parts[0]
            if not adapter_trainable:
                q_adapter.trainable = k_adapter.trainable = False
            if mode == "sensor":  # different sensors' adapters: nothing to follow
                q_parts, k_parts = q_parts[1:], k_parts[1:]
            elif not adapter_trainable:  # fixed, and the same image kind on both sides: one adapter, twice
                for k, q in zip(k_adapter.weights, q_adapter.weights, strict=True):
                    k.assign(q)
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

    @property
    def view_augmentation(self):
        """The augmentation the training step applies (`augmentation`, or the mode's default)."""
        return self.augmentation or DEFAULT_AUGMENTATION[self.mode]

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
        """Query and key images of a batch (augmented when `training`)."""
        if self.mode == "single":
            xq = xk = inputs[self.sensor]
        elif self.mode == "sensor":
            xq, xk = inputs["s2"], inputs["s1"]
        else:
            xq = xk = tf.concat([tf.cast(inputs["s1"], "float32"), tf.cast(inputs["s2"], "float32")], axis=-1)
        if not training or self.view_augmentation == "none":
            return xq, xk
        seeds = self.augmentation_seeds(3)
        xla = bool(self.jit_compile)
        if self.mode != "partial_fusion":
            return (moco_view(xq, seeds[0], self.view_augmentation, xla=xla),
                    moco_view(xk, seeds[1], self.view_augmentation, xla=xla))
        # Zeroed before the views are made, and again after: jitter and greyscale would otherwise put values
        # into the missing sensor's bands, which a downstream input of one sensor has as zeros.
        kinds = partial_fusion_masks(seeds[2], tf.shape(xq)[0])
        masked = partial_fusion(xq, kinds, self.s1_channels)
        return tuple(partial_fusion(moco_view(masked, seed, self.view_augmentation, xla=xla), kinds,
                                    self.s1_channels) for seed in seeds[:2])

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
            raise UserError(f"cross-modal retrieval needs one encoder per sensor: moco_{self.mode} has "
                            f"{'one for both' if 'fusion' in self.mode else 'one sensor'}")
        z = self(inputs, training=False)
        return {"s2": z["query"], "s1": z["key"]}

    def encoders(self):
        if self.mode == "sensor":
            return {"s2": self.encoder_q, "s1": self.encoder_k}
        if self.mode == "single":
            return {self.sensor: self.encoder_q}
        return {"s1s2": self.encoder_q}

    @classmethod
    def config_problem(cls, model):
        mode = model.method.split("_", 1)[1]
        if mode == "single" and model.inputs not in SINGLE_INPUTS:
            return (f"model.method {model.method} reads one sensor: model.inputs {' or '.join(SINGLE_INPUTS)}; "
                    f"received {model.inputs}")
        if mode != "sensor" and model.augmentation == "none":
            return f"model.method {model.method} makes query and key from one image: model.augmentation cannot be none"
        return None

    @classmethod
    def input_modalities(cls, model):
        mode = model.method.split("_", 1)[1]
        return (SINGLE_INPUTS[model.inputs],) if mode == "single" else ("s1", "s2")

    @classmethod
    def from_model_config(cls, model, inputs):
        mode = model.method.split("_", 1)[1]
        return cls(backbone=model.backbone, mode=mode, s1_channels=inputs.channels("s1"),
                   s2_channels=inputs.channels("s2"), adapters=model.adapters,
                   adapter_trainable=model.adapter_trainable, projection_dim=model.projection_dim or 128,
                   queue_size=model.queue_size, momentum=model.momentum, temperature=model.temperature,
                   augmentation=model.augmentation, sensor=SINGLE_INPUTS.get(model.inputs, "s2"),
                   sync_bn=model.sync_bn, image_size=inputs.image_size)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone, "mode": self.mode,
                "s1_channels": self.s1_channels, "s2_channels": self.s2_channels, "adapters": self.adapters,
                "adapter_trainable": self.adapter_trainable, "augmentation": self.augmentation, "sensor": self.sensor,
                "projection_dim": self.projection_dim, "queue_size": self.queue_size, "momentum": self.momentum,
                "temperature": self.temperature, "sync_bn": self.sync_bn, "image_size": self.image_size}


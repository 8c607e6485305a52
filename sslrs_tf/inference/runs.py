"""A finished run, or an export directory, opened for inference: its model and how its input is prepared.

The preparation is the one the model was trained with, taken from the run's config (a
downstream run) or the card beside the encoders (a pre-training run, a converted
checkpoint): which sensors, which bands in which order, the clip range and the
normalisation (:mod:`sslrs_tf.data.normalization`, the same ops as the training pipeline).
"""

import dataclasses
import json
import pathlib

import keras
import numpy as np
import tensorflow as tf

from sslrs_tf.config import load_config
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.errors import UserError
from sslrs_tf.experiment import Experiment
from sslrs_tf.models.pretrained import load_card, sensor_inputs, stream_modalities
from sslrs_tf.training.rundir import RunDir
from sslrs_tf.training.strategy import make_strategy

#: what a model gives: class scores per sample (classification), per pixel (segmentation), or embeddings
KINDS = ("single", "multi", "segmentation", "embedding")
#: ``--distribution``: the strategies of ``train.distribution`` that serve one process (see
#: :func:`~sslrs_tf.training.strategy.make_strategy`)
DISTRIBUTIONS = ("auto", "one_device", "mirrored")


@dataclasses.dataclass
class TrainedModel:
    """What inference needs from a finished run.

    Attributes:
        path: the run (or export) directory.
        card: its ``card.json``.
        kind: one of :data:`KINDS` (``"embedding"``: a pre-training run or converted encoders).
        inputs: ``{sensor: (bands, Normalization)}`` of the sensors the model reads, S1 first.
        class_names: the classes, in code order (empty for embeddings).
        crop_size: the side of the crops it was trained on (a Swin takes only that side).
        model: ``model(prepared)`` on ``{sensor: [N, H, W, C] prepared float32}`` gives logits
            (``[N, classes]`` or ``[N, H, W, classes]``) or ``{encoder name: [N, D] pooled embedding}``.
        strategy: the ``tf.distribute`` strategy the model was built in; :meth:`batched` splits each batch
            across its replicas.
    """

    path: pathlib.Path
    card: dict
    kind: str
    inputs: dict
    class_names: tuple
    crop_size: int
    model: object
    strategy: object = None

    def prepare(self, raw):
        """``{sensor: raw [N, H, W, C]}`` (S1 in dB, S2 as reflectance x 10 000, the bands of :attr:`inputs`
        in order) -> the model's input: clipped and normalised as in training, float32."""
        return {m: norm(raw[m], m, bands) for m, (bands, norm) in self.inputs.items()}

    def scores(self, logits):
        """Class probabilities of the model's logits: sigmoid for multi-label, else softmax over the last axis."""
        return tf.sigmoid(logits) if self.kind == "multi" else tf.nn.softmax(logits, axis=-1)

    def forward(self, raw):
        """``{sensor: raw [N, H, W, C]}`` -> class probabilities, or ``{encoder: embedding}`` for embeddings
        (tensors; what :meth:`predict` runs and the serving SavedModel exports)."""
        out = self.model(self.prepare(raw), training=False)
        return out if self.kind == "embedding" else self.scores(tf.cast(out, tf.float32))

    def predict(self, raw):
        """:meth:`forward` on a NumPy batch, NumPy out (through :meth:`batched`)."""
        if "_predict_fn" not in self.__dict__:
            self.__dict__["_predict_fn"] = self.batched(self.forward)
        return self.__dict__["_predict_fn"](raw)

    def batched(self, fn):
        """`fn` (``{sensor: raw [N, H, W, C]}`` -> tensors) as a function of NumPy batches, NumPy out: one traced
        graph (a Python call per layer would dominate), each batch split across :attr:`strategy`'s replicas
        (padded with copies of its last sample to a multiple of their count; the copies' results dropped)."""
        strategy = self.strategy or tf.distribute.get_strategy()
        replicas = strategy.num_replicas_in_sync

        @tf.function(reduce_retracing=True)
        def step(raw):
            # The replicas' results concatenated in replica order (strategy.gather returned one replica's part of a
            # dict of outputs here, TF 2.21 on logical CPUs).
            return tf.nest.map_structure(lambda v: tf.concat(strategy.experimental_local_results(v), axis=0),
                                         strategy.run(fn, args=(raw,)))

        def call(raw):
            n = len(next(iter(raw.values())))
            share = -(-n // replicas)
            padded = {m: np.concatenate([v, np.repeat(v[-1:], share * replicas - n, axis=0)]).astype(np.float32)
                      for m, v in raw.items()}

            def part(context):
                i = context.replica_id_in_sync_group
                return {m: tf.constant(v[i * share:(i + 1) * share]) for m, v in padded.items()}

            out = step(strategy.experimental_distribute_values_from_function(part))
            return tf.nest.map_structure(lambda t: t.numpy()[:n], out)

        return call


def _normalization(described, sensor):
    """The :class:`Normalization` of a card's input description of `sensor` (its method, NaN filling, z-score
    statistics)."""
    stats = {}
    if described.get("method") == "zscore":
        stats = {sensor: dict(zip(described["bands"], zip(described["mean"], described["std"], strict=True),
                                  strict=True))}
    return Normalization(described["method"], described.get("fill_nan", True), stats)


class Embedder(keras.Model):
    """Encoders side by side: ``{sensor: prepared input}`` -> ``{encoder name: pooled embedding}``.

    Args:
        encoders: ``{name: encoder}`` (``"s1"``, ``"s2"``, or ``"s1s2"`` for S1 and S2 stacked, S1 first).
    """

    def __init__(self, encoders, **kwargs):
        super().__init__(**kwargs)
        self.encoders = dict(encoders)
        self.built = True  # its encoders are built models; it adds no weight of its own

    def call(self, inputs):
        out = {}
        for name, encoder in self.encoders.items():
            x = tf.concat([inputs[m] for m in stream_modalities(name)], axis=-1)
            out[name] = encoder(x, training=False)["pooled"]
        return out


def open_run(path, what="--run", distribution="one_device"):
    """Opens a finished run (``config.yaml`` and ``export/``) or an export directory (``card.json`` and encoders).

    Args:
        distribution: the strategy the model is built in and predicts through: one of :data:`DISTRIBUTIONS`, or a
            ``tf.distribute.Strategy``.

    Raises:
        UserError: not such a directory, or the run has not finished (named with `what`).
    """
    if isinstance(distribution, tf.distribute.Strategy):
        strategy = distribution
    elif distribution in DISTRIBUTIONS:
        strategy = make_strategy(distribution)
    else:
        raise UserError(f"--distribution must be one of {', '.join(DISTRIBUTIONS)}. Received: {distribution!r}")
    with strategy.scope():
        trained = _open(pathlib.Path(path), what)
    trained.strategy = strategy
    return trained


def _open(path, what):
    """:func:`open_run` inside its strategy's scope."""
    run = RunDir(path)
    if not path.is_dir():
        raise UserError(f"{what} {path}: no such directory")
    if not run.config.is_file():
        if not (path / "card.json").is_file():
            raise UserError(f"{what} {path}: neither a run (no config.yaml) nor an export directory (no card.json)")
        return _open_encoders(path, what)
    if not (run.export / "card.json").is_file():
        raise UserError(f"{what} {path}: the run has not finished (no export/card.json); run train.py with its "
                        "config again to complete it")
    config = load_config(run.config)
    if not config.data.label:
        return _open_encoders(path, what, crop_size=config.data.crop_size)
    card = json.loads((run.export / "card.json").read_text())
    experiment = Experiment(config)
    classes = card.get("downstream", {}).get("classes")
    model = experiment.rebuilt(run.weights, classes)
    norm = Normalization(config.data.normalization)
    inputs = {m: (tuple(experiment.bands[m]), norm) for m in experiment.modalities}
    return TrainedModel(path, card, config.data.label, inputs, tuple(experiment.class_names), config.data.crop_size,
                        model)


def _open_encoders(path, what, crop_size=None):
    try:
        folder, card = load_card(path)
    except UserError as err:
        raise UserError(f"{what} {path}: {str(err).removeprefix('model.pretrained: ')}") from None
    encoders = {}
    for name, entry in card["encoders"].items():
        try:
            encoders[name] = keras.saving.load_model(folder / entry["file"])
        except (OSError, ValueError) as err:
            raise UserError(f"{what}: cannot load {folder / entry['file']}: {str(err).splitlines()[0]}") from None
    described = sensor_inputs(card)
    inputs = {m: (tuple(described[m]["bands"]), _normalization(described[m], m))
              for m in ("s1", "s2") if m in described}
    sizes = {e.get("input_shape", [None, None])[1] for e in card["encoders"].values()}
    size = crop_size or card.get("data", {}).get("crop_size") or next((s for s in sizes if s), None)
    return TrainedModel(path, card, "embedding", inputs, (), size, Embedder(encoders))

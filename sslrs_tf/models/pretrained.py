"""Encoders from a pre-training run directory (or a converted checkpoint directory) and their card.

The card travels with the weights: the method, the backbone, the normalisation and
bands the encoders were trained with, which encoders exist. A downstream config takes
these from the card (:func:`card_settings`); a downstream config that feeds the
encoders differently is an error, not a silent loss of accuracy (SPEC §7:
"normalisation and band order of weights").
"""

import json
import pathlib

import keras

from sslrs_tf.data.bands import MODALITY_BANDS
from sslrs_tf.data.normalization import METHODS, Normalization
from sslrs_tf.errors import UserError
from sslrs_tf.models.encoders import ENCODERS


def load_card(path):
    """``(folder, card)``: the ``card.json`` of a run directory (``RUN/export/card.json``) or of an export
    directory, and the folder that holds it."""
    path = pathlib.Path(path)
    for candidate in (path / "export" / "card.json", path / "card.json"):
        if candidate.is_file():
            try:
                card = json.loads(candidate.read_text())
            except ValueError as err:
                raise UserError(f"model.pretrained: {candidate} is not valid JSON ({err})") from None
            check_card(card, candidate)
            return candidate.parent, card
    raise UserError(f"model.pretrained: no card.json in {path} or {path / 'export'} "
                    "(expected a finished pre-training run directory or a converted checkpoint)")


def check_card(card, where):
    """Checks that a card has the entries this library writes and reads (a hand-edited card may not).

    Args:
        card: the parsed ``card.json``.
        where: its path, for the message.

    Raises:
        UserError: one line naming the first entry that is missing or not what it must be, with
            what it holds.
    """
    def fail(key, expected, value):
        raise UserError(f"model.pretrained: {where}: `{key}` must be {expected}. Received: {value!r}")

    if not isinstance(card, dict):
        fail("card", "a JSON object", card)
    if card.get("backbone") not in (*ENCODERS, "vgg"):
        fail("backbone", f"one of {', '.join((*ENCODERS, 'vgg'))}", card.get("backbone"))
    encoders = card.get("encoders")
    if not isinstance(encoders, dict) or not encoders:
        fail("encoders", "an object of encoders by input (s1, s2, s1s2)", encoders)
    for name, entry in encoders.items():
        key = f"encoders.{name}"
        sensors = stream_modalities(name)
        if not sensors or set(sensors) - set(MODALITY_BANDS) or "".join(sensors) != name:
            fail(key, "named after the sensors it reads (s1, s2, s1s2)", name)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
            fail(f"{key}.file", "the encoder's file name", entry.get("file") if isinstance(entry, dict) else entry)
        described = entry.get("input")
        stacked = isinstance(described, dict) and "stacked" in described
        parts = {m: described.get(m) for m in sensors} if stacked else {name: described}
        channels = 0
        for sensor, inputs in parts.items():
            part = f"{key}.input" + (f".{sensor}" if stacked else "")
            if not isinstance(inputs, dict):
                fail(part, "an object (bands, clip, method)", inputs)
            bands = inputs.get("bands")
            if not isinstance(bands, list) or not bands or not set(bands) <= set(MODALITY_BANDS[sensor]):
                fail(f"{part}.bands", f"a list of {sensor} bands ({', '.join(MODALITY_BANDS[sensor])})", bands)
            if inputs.get("method") not in METHODS:
                fail(f"{part}.method", f"one of {', '.join(METHODS)}", inputs.get("method"))
            channels += len(bands)
        shape = entry.get("input_shape")
        if not (isinstance(shape, list) and len(shape) == 4 and all(s is None or isinstance(s, int) for s in shape)):
            fail(f"{key}.input_shape", "[batch, height, width, channels]", shape)
        if shape[-1] != channels:
            fail(f"{key}.input_shape", f"[..., {channels}] (the {channels} bands of its input)", shape)
        output = entry.get("output")
        if not isinstance(output, dict) or not isinstance(output.get("pooled"), list):
            fail(f"{key}.output", "an object with the `pooled` shape", output)


def stream_modalities(name):
    """The sensors an encoder named `name` reads, in channel order: ``"s1s2"`` -> ``["s1", "s2"]``."""
    return [name[i:i + 2] for i in range(0, len(name), 2)]


def describe_input(norm, name, bands):
    """A card's input entry for the encoder of stream `name`: one sensor's :meth:`Normalization.describe`, or,
    for sensors stacked along channels (``"s1s2"``), ``{"stacked": [...], "s1": ..., "s2": ...}``."""
    norm = norm if isinstance(norm, Normalization) else Normalization.from_config(norm)
    if name in bands:
        return norm.describe(name, bands[name])
    parts = stream_modalities(name)
    return {"stacked": parts, **{p: norm.describe(p, bands[p]) for p in parts}}


def sensor_inputs(card):
    """``{sensor: input description}`` of every sensor some encoder of `card` reads."""
    out = {}
    for name, entry in card.get("encoders", {}).items():
        described = entry.get("input", {})
        if "stacked" in described:
            out.update({m: described[m] for m in described["stacked"]})
        else:
            out[name] = described
    return out


#: the ``model.inputs`` a downstream model takes from a card's encoders when its config's do not exist there
CARD_INPUTS = {("s1", "s2"): "late_fusion", ("s2",): "only_s2", ("s1",): "only_s1", ("s1s2",): "early_fusion"}


def card_settings(card):
    """``{dotted config key: value}``: what a downstream config takes from a pre-trained card.

    The backbone (and what its build needs: MMA's ``embedding_dim``, MoCo's adapters, a Swin's
    input size), the normalisation and each sensor's bands. ``model.inputs`` is chosen separately
    (:data:`CARD_INPUTS`): a config may use a subset of the card's encoders.
    """
    settings = {"model.backbone": card.get("backbone"), "model.adapters": bool(card.get("adapters", False))}
    encoders = card.get("encoders", {})
    if card.get("backbone") == "vgg":
        pooled = next(iter(encoders.values()))["output"]["pooled"]
        settings["model.embedding_dim"] = int(pooled[-1])
    sizes = {e.get("input_shape", [None, None])[1] for e in encoders.values()}
    if len(sizes) == 1 and None not in sizes:  # an encoder built for one input size (a Swin)
        settings["data.crop_size"] = int(sizes.pop())
    inputs = sensor_inputs(card)
    methods = {d.get("method") for d in inputs.values()}
    if len(methods) == 1:
        settings["data.normalization"] = methods.pop()
    for modality in ("s1", "s2"):
        if modality in inputs:
            settings[f"data.{modality}_bands"] = list(inputs[modality]["bands"])
    return settings


def load_encoders(path, streams, normalization, bands, backbone=None):
    """The pretrained encoders of `streams`, checked against how the downstream data is prepared.

    Args:
        path: run directory or export directory.
        streams: encoder names, e.g. ``("s1", "s2")`` or ``("s1s2",)``.
        normalization: the downstream config's normalisation name or config.
        bands: ``{modality: [band names]}`` of the downstream data.
        backbone: the downstream config's backbone (checked against the card's), or None.

    Returns:
        ``(card, {stream: keras.Model})``.
    """
    folder, card = load_card(path)
    if backbone is not None and card.get("backbone") != backbone:
        raise UserError(f"model.pretrained: {folder / 'card.json'} has backbone {card.get('backbone')!r}, "
                        f"the config model.backbone {backbone!r}")
    norm = Normalization.from_config(normalization)
    encoders = {}
    for m in streams:
        entry = card.get("encoders", {}).get(m)
        if entry is None:
            raise UserError(f"model.pretrained: {folder / 'card.json'} has no {m} encoder "
                            f"(it has {sorted(card.get('encoders', {}))})")
        expected, found = describe_input(norm, m, bands), entry["input"]
        if found != expected:
            flat = lambda d: {f"{k}.{j}": w for k, v in d.items() if isinstance(v, dict) for j, w in v.items()} \
                if "stacked" in d else d  # noqa: E731
            expected, found = flat(expected), flat(found)
            diff = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
            raise UserError(
                f"model.pretrained: the {m} encoder was trained on input prepared differently ({', '.join(diff)}: "
                f"card {[found.get(k) for k in diff]}, config {[expected.get(k) for k in diff]}); "
                "set data.normalization and data.s1_bands/s2_bands as in its card.json")
        try:
            encoders[m] = keras.saving.load_model(folder / entry["file"])
        except (OSError, ValueError) as err:
            raise UserError(f"model.pretrained: cannot load {folder / entry['file']}: {str(err).splitlines()[0]}") from None
    return card, encoders

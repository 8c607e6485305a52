"""Encoders from a pre-training run directory (or a converted checkpoint directory) and their card.

The card travels with the weights: the normalisation and bands the encoders were
trained with. A downstream config that feeds them differently is an error, not a
silent loss of accuracy (SPEC §7: "normalisation and band order of weights").
"""

import json
import pathlib

import keras

from sslrs_tf.data.normalization import Normalization
from sslrs_tf.errors import UserError


def load_card(path):
    """The ``card.json`` of a run directory (``RUN/export/card.json``) or of an export directory."""
    path = pathlib.Path(path)
    for candidate in (path / "export" / "card.json", path / "card.json"):
        if candidate.is_file():
            return candidate.parent, json.loads(candidate.read_text())
    raise UserError(f"model.pretrained: no card.json in {path} or {path / 'export'} "
                    "(expected a finished pre-training run directory or a converted checkpoint)")


def load_encoders(path, modalities, normalization, bands, backbone=None):
    """The pretrained encoders of `modalities`, checked against how the downstream data is prepared.

    Args:
        path: run directory or export directory.
        modalities: e.g. ``("s1", "s2")``.
        normalization: the downstream config's normalisation name or config.
        bands: ``{modality: [band names]}`` of the downstream data.
        backbone: the downstream config's backbone (checked against the card's), or None.

    Returns:
        ``(card, {modality: keras.Model})``.
    """
    folder, card = load_card(path)
    if backbone is not None and card.get("backbone") != backbone:
        raise UserError(f"model.pretrained: {folder / 'card.json'} has backbone {card.get('backbone')!r}, "
                        f"the config model.backbone {backbone!r}")
    norm = Normalization(normalization)
    encoders = {}
    for m in modalities:
        entry = card.get("encoders", {}).get(m)
        if entry is None:
            raise UserError(f"model.pretrained: {folder / 'card.json'} has no {m} encoder "
                            f"(it has {sorted(card.get('encoders', {}))})")
        expected = norm.describe(m, bands[m])
        if entry["input"] != expected:
            diff = sorted(k for k in set(expected) | set(entry["input"]) if expected.get(k) != entry["input"].get(k))
            raise UserError(
                f"model.pretrained: the {m} encoder was trained on input prepared differently ({', '.join(diff)}: "
                f"card {[entry['input'].get(k) for k in diff]}, config {[expected.get(k) for k in diff]}); "
                "set data.normalization and data.s1_bands/s2_bands as in its card.json")
        try:
            encoders[m] = keras.saving.load_model(folder / entry["file"])
        except (OSError, ValueError) as err:
            raise UserError(f"model.pretrained: cannot load {folder / entry['file']}: {str(err).splitlines()[0]}") from None
    return card, encoders

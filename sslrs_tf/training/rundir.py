"""The run directory: everything a run writes, and the exported encoders with their card.

    RUN_DIR/config.yaml       the resolved config
    RUN_DIR/tensorboard/      TensorBoard logs (`tensorboard --logdir RUN_DIR/..`)
    RUN_DIR/checkpoints/      the state needed to resume (model, optimizer, position)
    RUN_DIR/export/encoder_s1.keras, encoder_s2.keras, card.json
    RUN_DIR/export/model.weights.h5   the whole model (heads too), for evaluate.py
    RUN_DIR/metrics.json, metrics.md  written by evaluate.py
"""

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import subprocess

import yaml

import sslrs_tf
from sslrs_tf.config import dump_config, load_config
from sslrs_tf.data.catalog import CATALOG
from sslrs_tf.data.normalization import Normalization
from sslrs_tf.errors import UserError, reason
from sslrs_tf.models.pretrained import describe_input


class RunDir:
    """Paths of one run, and the check that a resumed run is the same run.

    Args:
        path: the run directory (``run.dir``).
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.config = self.path / "config.yaml"
        self.tensorboard = self.path / "tensorboard"
        self.checkpoints = self.path / "checkpoints"
        self.export = self.path / "export"
        self.weights = self.export / "model.weights.h5"
        self.metrics = self.path / "metrics.json"
        self._partial, self._previous = self.path / ".export.partial", self.path / ".export.previous"
        with contextlib.suppress(OSError):  # (a folder this process may not read is reported when it is written)
            if self._previous.is_dir() and not self.export.exists():  # stopped between an export's two renames
                os.replace(self._previous, self.export)

    def trained(self):
        """Whether the run has saved anything to resume from or use: a checkpoint or an export."""
        return (self.checkpoints / "checkpoint").exists() or self.export.exists()

    def start(self, config):
        """Writes the resolved config, or checks that an existing run has the same one.

        A run that has saved neither a checkpoint nor an export (a start that failed, say on a
        mistyped data config) does not hold its directory: another config replaces its config, and
        its TensorBoard logs are removed.

        Raises:
            UserError: the directory holds a trained run with another config.
        """
        text = dump_config(config)
        if self.config.exists():
            old = yaml.safe_load(self.config.read_text())
            try:
                # Keys a newer version added (with their defaults) do not make the run a different one.
                old = load_config(data=old).to_dict()
            except UserError:
                pass  # compared as written: the difference is reported below
            new = config.to_dict()
            if isinstance(old, dict) and isinstance(old.get("run"), dict):
                old["run"]["dir"] = new["run"]["dir"]  # a moved or copied run directory is the same run
            if old == new:
                return
            if self.trained():
                changed = sorted(_diff(old, new))
                raise UserError(
                    f"run.dir {self.path} holds a run with a different config ({', '.join(changed[:3])} differ); "
                    "use a new run.dir, or the same config to resume"
                )
            shutil.rmtree(self.tensorboard, ignore_errors=True)  # a failed start's logs
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            # Atomically: a multi-worker run's workers start together and read what the chief writes.
            partial = self.config.with_name(f".config.yaml.{os.getpid()}")
            partial.write_text(text)
            os.replace(partial, self.config)
        except OSError as err:
            raise UserError(f"run.dir {self.path}: cannot write there ({reason(err)})") from None

    def export_encoders(self, model, config, metrics, class_names=None):
        """Saves each encoder as ``.keras``, the whole model's weights and ``card.json`` with what a user of
        the weights needs (a downstream run's: its `class_names`, in code order), and returns the card.

        The files are written into a folder beside ``export/`` that replaces it once complete: an
        export cut short (a kill, a full disk) leaves the previous one as it was.

        Raises:
            UserError: a file cannot be written (the previous export is kept).
        """
        shutil.rmtree(self._partial, ignore_errors=True)
        try:
            card = self._write_export(self._partial, model, config, metrics, class_names)
        except OSError as err:
            shutil.rmtree(self._partial, ignore_errors=True)
            kept = "the previous export is kept" if self.export.is_dir() else "nothing was exported"
            raise UserError(f"run.dir {self.path}: cannot write the export ({reason(err)}); {kept}; "
                            "make room and run the same command to export again") from None
        shutil.rmtree(self._previous, ignore_errors=True)
        if self.export.exists():
            os.replace(self.export, self._previous)
        os.replace(self._partial, self.export)
        shutil.rmtree(self._previous, ignore_errors=True)
        return card

    def _write_export(self, folder, model, config, metrics, class_names):
        folder.mkdir(parents=True)
        norm = Normalization(config.data.normalization)
        bands = {"s1": config.data.s1_bands, "s2": config.data.s2_bands}
        files = {}
        for modality, encoder in model.encoders().items():
            path = folder / f"encoder_{modality}.keras"
            encoder.save(path)
            files[modality] = path.name
        model.save_weights(folder / self.weights.name)
        card = {
            "method": config.model.method,
            "backbone": config.model.backbone,
            # What a downstream model needs to rebuild the encoders (models.encoders.make_encoder).
            "adapters": bool(getattr(model, "adapters", False)),
            **({"embedding_dim": config.model.embedding_dim} if config.model.backbone == "vgg" else {}),
            "encoders": {m: encoder_entry(model.encoders()[m], files[m], describe_input(norm, m, bands))
                         for m in files},
            "data": {"source": config.data.source, "dataset": config.data.dataset, "config": config.data.config,
                     "split": config.data.split, "crop_size": config.data.crop_size,
                     **({"missing_bands": config.data.missing_bands} if config.data.dataset in CATALOG else {}),
                     **({"synthetic": True, "note": "SYNTHETIC data: not for real imagery"}
                        if config.data.source == "synthetic" else {})},
            # batch_size is global: split over `replicas` by `distribution`.
            "training": {"epochs": config.train.epochs, "batch_size": config.train.batch_size,
                         "distribution": config.train.distribution,
                         "replicas": model.distribute_strategy.num_replicas_in_sync,
                         "jit_compile": bool(model.jit_compile),
                         "optimizer": config.optimizer.name, "lr": config.optimizer.lr, "seed": config.train.seed},
            **({"downstream": {"inputs": config.model.inputs, "label": config.data.label,
                               "label_fraction": config.data.label_fraction, "label_count": config.data.label_count,
                               "label_scheme": config.data.label_scheme, "pretrained": config.model.pretrained,
                               "freeze": config.model.freeze,
                               **({"classes": list(class_names)} if class_names is not None else {})}}
               if config.data.label else {}),
            "final_metrics": {k: float(v) for k, v in metrics.items()},
            "code_version": code_version(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        return card


def encoder_entry(encoder, file, input_description):
    """A card's entry for one exported encoder: its file, how its input is prepared, its input and output shapes."""
    return {"file": file, "input": input_description,
            "input_shape": _shape(encoder.input),  # a Swin takes one image size only
            "output": _describe_output(encoder)}


def _describe_output(encoder):
    """The card's output entry of an encoder: its output names and shapes (batch and image sizes as None)."""
    outputs = encoder.output if isinstance(encoder.output, dict) else {"output": encoder.output}
    return {k: _shape(v) for k, v in outputs.items()}


def _shape(tensor):
    return [None if d is None else int(d) for d in tensor.shape]


def code_version():
    """The package version, plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=pathlib.Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    return f"{sslrs_tf.__version__}" + (f"+{commit}" if commit else "")


def _diff(a, b, prefix=""):
    for key in set(a) | set(b):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            yield from _diff(x, y, f"{prefix}{key}.")
        elif x != y:
            yield f"{prefix}{key}"

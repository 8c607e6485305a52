"""Convert the research code's PyTorch dual-backbone checkpoints into sslrs_tf encoders.

    python -m sslrs_tf.convert CHECKPOINT.pth --arch resnet18|resnet50|swin_t --out DIR

writes ``DIR/encoder_s1.keras``, ``DIR/encoder_s2.keras`` and ``DIR/card.json``: a
directory that works wherever a pre-training run does (``model.pretrained=DIR`` in a
fine-tuning config, ``pretrained=DIR`` in a protocol). The card carries the
normalisation the weights were trained with — the research code's clip and
per-sample maximum, all 13 S2 bands (SPEC §3) — and where the weights came from.

The checkpoint must hold the released layout (SPEC §4): ``backbone1.`` = S1 encoder
(2 channels), ``backbone2.`` = S2 encoder (13 channels), torchvision ResNet or
original Swin names. A checkpoint that does not match ``--arch`` (missing or
unexpected keys, wrong shapes, wrong channel count) is refused with the first
offending keys. The projection heads (``fc.*``, ``head.*``) are not converted:
downstream use starts from the encoders.

Reading ``.pth`` needs PyTorch, an optional dependency:
``pip install 'sslrs_tf[torch]'`` (``torch==2.13.0``, the CPU build).
"""

import argparse
import datetime
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)
from sslrs_tf.config import ENCODERS
from sslrs_tf.data.bands import MODALITY_BANDS
from sslrs_tf.errors import UserError

#: key prefix of each modality's encoder in the released checkpoints
PREFIXES = {"s1": "backbone1.", "s2": "backbone2."}
#: the normalisation the research code trained with (SPEC §3); its name in data.normalization
NORMALIZATION = "per_sample_max"
#: input side a converted Swin is built for, unless --image-size says otherwise (its weights fit any valid size)
SWIN_IMAGE_SIZE = {"swin_t": 224, "swin_micro": 32}
#: where a trainer wrapped its state dict, as torch.save'd by common training loops
_WRAPPERS = ("state_dict", "model", "model_state_dict", "net")
_SHOWN = 3  # offending keys named per kind of mismatch


def read_checkpoint(path):
    """The tensors of the PyTorch checkpoint at `path` as NumPy arrays (floating point as float32).

    Unwraps a state dict saved inside a dict (``{"state_dict": ...}``, ``{"model": ...}``)
    and drops the ``module.`` prefix of (Distributed)DataParallel.

    Returns:
        ``(state, wrapper)``: ``{key: np.ndarray}`` and the key it was found under (or None).
    """
    path = pathlib.Path(path)
    try:
        import torch
    except ImportError:
        raise UserError("reading a PyTorch checkpoint needs PyTorch, an optional dependency: "
                        "pip install 'sslrs_tf[torch]' (or pip install torch==2.13.0, the CPU build)") from None
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        # weights_only: a checkpoint is data; never let one run code while it loads.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (torch raises many kinds for a file that is not a checkpoint)
        raise UserError(f"{path}: not a PyTorch checkpoint that torch.load can read as weights "
                        f"({type(err).__name__}: {str(err).strip().splitlines()[0][:200]})") from None
    wrapper = None
    if isinstance(obj, dict) and not _is_state_dict(obj, torch):
        wrapper = next((k for k in _WRAPPERS if isinstance(obj.get(k), dict) and _is_state_dict(obj[k], torch)), None)
        if wrapper is None:
            raise UserError(f"{path}: holds no state dict (top-level keys: {', '.join(map(str, list(obj)[:8]))}); "
                            f"expected tensors, or a dict with one of {', '.join(_WRAPPERS)}")
        obj = obj[wrapper]
    if not isinstance(obj, dict) or not obj:
        raise UserError(f"{path}: holds a {type(obj).__name__}, expected a state dict of tensors")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    state = {k: (v.detach().to(torch.float32) if v.is_floating_point() else v.detach()).numpy() for k, v in obj.items()}
    return state, wrapper


def _is_state_dict(obj, torch):
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def convert_state_dict(state, arch, image_size=None, checkpoint="checkpoint"):
    """The S1 and S2 encoders of `arch` with the weights of `state` (the released layout).

    Args:
        state: ``{key: array}`` as :func:`read_checkpoint` returns it.
        arch: an encoder :func:`sslrs_tf.models.encoders.make_encoder` builds (``resnet18``,
            ``resnet50``, ``swin_t``; also ``resnet10``, ``resnet34``, ``swin_micro``).
        image_size: input side of a Swin (default :data:`SWIN_IMAGE_SIZE`); ignored by ResNets.
        checkpoint: the checkpoint's name in error messages.

    Returns:
        ``({modality: keras.Model}, {"converted": {modality: count}, "not_converted": [keys]})``.

    Raises:
        UserError: the state does not match `arch`; the message names the first offending keys.
    """
    from sslrs_tf.models import torch_layout
    from sslrs_tf.models.encoders import make_encoder

    if arch not in ENCODERS:
        raise UserError(f"--arch {arch!r} is not an encoder; expected one of {', '.join(ENCODERS)}")
    if torch_layout.is_swin(arch):
        image_size = image_size or SWIN_IMAGE_SIZE[arch]
    try:
        encoders = {m: make_encoder(arch, len(MODALITY_BANDS[m]), image_size=image_size, name=f"encoder_{m}")
                    for m in PREFIXES}
    except ValueError as err:
        raise UserError(f"--image-size {image_size}: {err}") from None

    expected = {}  # torch key -> (keras variable, torch shape)
    for m, encoder in encoders.items():
        for v in encoder.weights:
            expected[PREFIXES[m] + torch_layout.torch_key(arch, v.path)] = (v, torch_layout.torch_shape(v.path, v.shape))
    missing = [k for k in expected if k not in state]
    unexpected, extra = [], []
    for key in state:
        if key in expected:
            continue
        prefix = next((p for p in PREFIXES.values() if key.startswith(p)), None)
        if prefix and torch_layout.is_extra(arch, key[len(prefix):]):
            extra.append(key)
        else:
            unexpected.append(key)
    wrong = [(k, tuple(state[k].shape), shape) for k, (_, shape) in expected.items()
             if k in state and tuple(state[k].shape) != tuple(shape)]
    bad_buffers = [k for p in PREFIXES.values() for k in torch_layout.check_buffers(arch, state, p)]
    problems = []
    if missing:
        problems.append(f"missing {_first(missing)}")
    if unexpected:
        problems.append(f"unexpected {_first(unexpected)}")
    if wrong:
        problems.append(f"wrong shape {_first([_shape_problem(*w) for w in wrong])}")
    if bad_buffers:
        problems.append(f"relative_position_index of another window layout {_first(bad_buffers)}")
    if problems:
        raise UserError(f"{checkpoint} does not match --arch {arch}: {'; '.join(problems)}{_guess(state, arch)}")
    for key, (v, _) in expected.items():
        v.assign(torch_layout.to_keras(state[key], v.path))
    report = {"converted": {m: sum(k.startswith(p) for k in expected) for m, p in PREFIXES.items()},
              "not_converted": sorted(k for k in extra if torch_layout.is_head(arch, k.split(".", 1)[1]))}
    return encoders, report


def _first(keys):
    more = f" (+{len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def _shape_problem(key, got, want):
    text = f"{key} {list(got)} (expected {list(want)}"
    if len(got) == 4 and got[0] == want[0] and got[2:] == want[2:] and got[1] != want[1]:
        # the first layer's input channels: the checkpoint was trained on other bands
        m = next(m for m, p in PREFIXES.items() if key.startswith(p))
        text += f": the {m.upper()} encoder takes {want[1]} channels, {', '.join(MODALITY_BANDS[m])}"
    return text + ")"


def _guess(state, arch):
    from sslrs_tf.models.torch_layout import guess_arch

    guesses = {guess_arch([k[len(p):] for k in state if k.startswith(p)]) for p in PREFIXES.values()}
    guesses.discard(None)
    if len(guesses) == 1 and arch not in guesses:
        return f" (the checkpoint looks like --arch {guesses.pop()})"
    if not any(k.startswith(tuple(PREFIXES.values())) for k in state):
        return f" (no key starts with {' or '.join(PREFIXES.values())}: not a dual-backbone checkpoint)"
    return ""


def convert(checkpoint, arch, out, image_size=None):
    """Converts `checkpoint` (``.pth``) into ``out/encoder_s1.keras``, ``encoder_s2.keras`` and ``card.json``.

    `out` must not exist or be empty. The directory appears complete or not at all: it
    is written under a temporary name beside `out` and renamed when done.

    Returns:
        The card (a dict).
    """
    checkpoint, out = pathlib.Path(checkpoint), pathlib.Path(out)
    if arch not in ENCODERS:
        raise UserError(f"--arch {arch!r} is not an encoder; expected one of {', '.join(ENCODERS)} "
                        "(released: resnet18, resnet50, swin_t)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out}: exists and is not an empty directory (nothing is overwritten); "
                        "choose a new directory")
    state, wrapper = read_checkpoint(checkpoint)
    # TensorFlow loads only now: a wrong argument or an unreadable file is reported at once.
    import torch

    from sslrs_tf.data.normalization import Normalization
    from sslrs_tf.training.rundir import code_version, encoder_entry

    encoders, report = convert_state_dict(state, arch, image_size, checkpoint)

    norm = Normalization(NORMALIZATION)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        entries = {}
        for m, encoder in encoders.items():
            encoder.save(partial / f"encoder_{m}.keras")
            entries[m] = encoder_entry(encoder, f"encoder_{m}.keras", norm.describe(m))
        card = {
            "method": "dual_simclr",
            "backbone": arch,
            "encoders": entries,
            "source": {
                "checkpoint": str(checkpoint.resolve()),
                "sha256": _sha256(checkpoint),
                "layout": "research code dual backbone (backbone1. = S1, backbone2. = S2)"
                          + (f", under {wrapper!r}" if wrapper else ""),
                "converted_tensors": report["converted"],
                "not_converted": report["not_converted"],
                "normalization": "the research code's: clip S1 to [-25, 0] dB and S2 to [0, 10000], shift S1 by "
                                 "+25, divide each channel of each sample by its maximum. It skipped batches "
                                 "containing NaN, so the weights saw finite inputs; fill_nan sets NaN to the "
                                 "lower clip bound",
                "torch": torch.__version__,
            },
            "code_version": code_version(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (partial / "card.json").write_text(json.dumps(card, indent=2) + "\n")
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return card


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv=None):
    """The command line: ``python -m sslrs_tf.convert CHECKPOINT --arch ARCH --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m sslrs_tf.convert",
        description="Convert a research-code PyTorch dual-backbone checkpoint (backbone1. = S1, backbone2. = S2) "
                    "into sslrs_tf encoders with their card.json.")
    parser.add_argument("checkpoint", help="the .pth file")
    parser.add_argument("--arch", required=True, help="resnet18, resnet50 or swin_t (as released); "
                        "resnet10, resnet34, swin_micro also convert")
    parser.add_argument("--out", required=True, help="new directory for encoder_s1.keras, encoder_s2.keras, card.json")
    parser.add_argument("--image-size", type=int, default=None,
                        help="Swin only: the input side to build for (default 224 for swin_t)")
    args = parser.parse_args(argv)

    from sslrs_tf.errors import run_entry_point

    def action():
        card = convert(args.checkpoint, args.arch, args.out, args.image_size)
        counts = ", ".join(f"{m} {n} tensors" for m, n in card["source"]["converted_tensors"].items())
        print(f"converted {args.checkpoint} ({args.arch}: {counts}) to {args.out}; use it as "
              f"model.pretrained={args.out} (data.normalization {NORMALIZATION}, all 13 S2 bands)")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())

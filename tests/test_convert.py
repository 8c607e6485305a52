"""python -m sslrs_tf.convert: PyTorch checkpoints of the released layout -> sslrs_tf encoders with their card.

The PyTorch models are written in tests/torch_reference.py from the published
architectures; parity is checked on the pooled features of both encoders.
"""

import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import yaml

from evaluate import main as evaluate_main
from sslrs_tf.convert import convert_state_dict, main as convert_main
from sslrs_tf.data.bands import S2_BANDS
from sslrs_tf.errors import UserError
from tests.helpers import ROOT


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch is the optional extra sslrs_tf[torch]")


def state_of(dual):
    """A module's state dict as read_checkpoint returns it (NumPy, floating point as float32)."""
    return {k: v.float().numpy() if v.is_floating_point() else v.numpy() for k, v in dual.state_dict().items()}


@pytest.fixture(scope="module")
def resnet10(torch):
    from tests.torch_reference import Dual

    return state_of(Dual("resnet10"))


@pytest.fixture(scope="module")
def converted_resnet18(torch, tmp_path_factory):
    """A Dual ResNet-18 saved as a .pth, converted by the command line, its encoders loaded from the files:
    (torch model, .pth, out dir, {modality: keras.Model})."""
    import keras

    from tests.torch_reference import Dual

    tmp = tmp_path_factory.mktemp("resnet18")
    dual, checkpoint, out = Dual("resnet18"), tmp / "resnet18.pth", tmp / "converted"
    torch.save(dual.state_dict(), checkpoint)
    assert convert_main([str(checkpoint), "--arch", "resnet18", "--out", str(out)]) == 0
    return dual, checkpoint, out, {m: keras.saving.load_model(out / f"encoder_{m}.keras") for m in ("s1", "s2")}


def assert_same_pooled_features(dual, encoders, size, torch):
    rng = np.random.default_rng(1)
    for m, backbone, channels in (("s1", dual.backbone1, 2), ("s2", dual.backbone2, 13)):
        x = rng.uniform(0.0, 1.0, (2, size, size, channels)).astype(np.float32)  # per-sample-max range
        with torch.no_grad():
            expected = backbone.features(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
        got = np.asarray(encoders[m](x, training=False)["pooled"])
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_the_command_line_writes_encoders_that_give_pytorchs_features_and_their_card(converted_resnet18, torch):
    dual, checkpoint, out, encoders = converted_resnet18
    assert_same_pooled_features(dual, encoders, 64, torch)
    card = json.loads((out / "card.json").read_text())
    assert card["backbone"] == "resnet18" and card["method"] == "dual_simclr"
    s2 = card["encoders"]["s2"]["input"]
    assert s2 == {"bands": list(S2_BANDS), "clip": [0.0, 10000.0], "method": "per_sample_max", "fill_nan": True}
    assert card["encoders"]["s1"]["input"]["clip"] == [-25.0, 0.0]
    assert card["encoders"]["s2"]["output"]["pooled"] == [None, 512]
    assert card["source"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert card["source"]["checkpoint"] == str(checkpoint.resolve())
    # the research code's MLP projection heads are left out
    assert card["source"]["not_converted"] == [f"backbone{i}.fc.{j}.{p}" for i in (1, 2) for j in (0, 2)
                                               for p in ("bias", "weight")]
    counts = card["source"]["converted_tensors"]
    assert counts["s1"] == counts["s2"] == len(encoders["s2"].weights)


@pytest.mark.parametrize("arch, size", [("resnet50", 64), ("swin_t", 224)])
def test_resnet50_and_swin_t_checkpoints_convert_to_pytorchs_features(arch, size, torch, tmp_path):
    from sslrs_tf.convert import read_checkpoint
    from tests.torch_reference import Dual

    dual = Dual(arch, image_size=size)
    torch.save(dual.state_dict(), tmp_path / "c.pth")
    encoders, report = convert_state_dict(read_checkpoint(tmp_path / "c.pth")[0], arch)
    assert_same_pooled_features(dual, encoders, size, torch)
    if arch == "swin_t":  # built for the published 224 px, the Swin heads left out
        assert encoders["s2"].input.shape == (None, 224, 224, 13)
        assert report["not_converted"] == [f"backbone{i}.head.{p}" for i in (1, 2) for p in ("bias", "weight")]


def _refusal(state, arch):
    with pytest.raises(UserError) as err:
        convert_state_dict(state, arch, checkpoint="c.pth")
    return str(err.value)


def test_checkpoints_that_do_not_match_the_architecture_are_refused_naming_the_first_keys(resnet10, converted_resnet18,
                                                                                          torch):
    from tests.torch_reference import Dual

    message = _refusal(state_of(converted_resnet18[0]), "resnet10")
    assert message.startswith("c.pth does not match --arch resnet10: unexpected backbone1.layer1.1.conv1.weight, "
                              "backbone1.layer1.1.bn1.weight, backbone1.layer1.1.bn1.bias (+")
    assert message.endswith("(the checkpoint looks like --arch resnet18)")

    state = dict(resnet10, **{"backbone2.extra.weight": np.zeros(3, np.float32)})
    assert _refusal(state, "resnet10") == "c.pth does not match --arch resnet10: unexpected backbone2.extra.weight"

    state = {k: v for k, v in resnet10.items() if k != "backbone2.layer3.0.bn2.running_var"}
    assert _refusal(state, "resnet10").endswith("missing backbone2.layer3.0.bn2.running_var")

    # An S2 encoder trained on 10 bands (the MoCo work's set) is not the research code's 13-band one.
    state = dict(resnet10, **{"backbone2.conv1.weight": np.zeros((64, 10, 7, 7), np.float32)})
    assert _refusal(state, "resnet10").endswith(
        "wrong shape backbone2.conv1.weight [64, 10, 7, 7] (expected [64, 13, 7, 7]: the S2 encoder takes 13 "
        f"channels, {', '.join(S2_BANDS)})")

    plain = {k.split(".", 1)[1]: v for k, v in resnet10.items() if k.startswith("backbone1.")}
    assert _refusal(plain, "resnet10").endswith("(no key starts with backbone1. or backbone2.: not a dual-backbone "
                                                "checkpoint)")

    swin = state_of(Dual("swin_micro", image_size=32))
    assert "(the checkpoint looks like --arch swin_micro)" in _refusal(swin, "resnet10")
    key = "backbone1.layers.0.blocks.0.attn.relative_position_index"
    swin[key] = swin[key][::-1].copy()  # a Swin whose bias table is indexed differently
    assert _refusal(swin, "swin_micro").endswith(f"relative_position_index of another window layout {key}")


def test_command_line_errors_are_one_line_and_nothing_is_overwritten(resnet10, torch, tmp_path, capsys, monkeypatch):
    checkpoint = tmp_path / "r10.pth"
    torch.save({"backbone1." + k: torch.zeros(1) for k in ("conv1.weight",)}, checkpoint)
    assert convert_main([str(checkpoint), "--arch", "resnet10", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {checkpoint} does not match --arch resnet10: missing ") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()

    # As the user's shell runs it: an unreadable file is one line on stderr, before TensorFlow starts (and logs).
    not_torch = tmp_path / "notes.pth"
    not_torch.write_text("not a checkpoint")
    cli = subprocess.run([sys.executable, "-m", "sslrs_tf.convert", str(not_torch), "--arch", "resnet10", "--out",
                          str(tmp_path / "x")], capture_output=True, text=True, cwd=ROOT)
    assert cli.returncode == 2 and cli.stderr.count("\n") == 1, cli.stderr
    assert cli.stderr.startswith(f"error: {not_torch}: not a PyTorch checkpoint that torch.load can read as weights")

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    assert convert_main([str(checkpoint), "--arch", "resnet10", "--out", str(kept)]) == 2
    assert "--out" in capsys.readouterr().err and (kept / "notes.txt").read_text() == "mine"

    monkeypatch.setitem(sys.modules, "torch", None)  # PyTorch not installed
    assert convert_main([str(checkpoint), "--arch", "resnet10", "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reading a PyTorch checkpoint needs PyTorch") and "pip install" in err
    assert err.count("\n") == 1


def test_a_converted_directory_starts_protocols_and_fine_tuning_configs(converted_resnet18, small_world, tmp_path,
                                                                        capsys):
    from sslrs_tf.config import load_config
    from sslrs_tf.evaluation.protocol import load_protocol, run_config
    from sslrs_tf.experiment import Experiment

    _, _, converted, encoders = converted_resnet18
    expected = {m: e.get_weights() for m, e in encoders.items()}
    protocol = tmp_path / "protocol.yaml"
    protocol.write_text(yaml.safe_dump({"dir": str(tmp_path / "p"), "base": str(ROOT / "configs" / "finetune_tiny.yaml"),
                                        "pretrained": str(converted), "models": ["Dual-SimCLR fine-tuned"],
                                        "overrides": [*small_world, "model.backbone=resnet18"]}))
    # A protocol run's config is a fine-tuning config (finetune_tiny.yaml plus the model's overrides).
    config = run_config(load_protocol(protocol), "single", "Dual-SimCLR fine-tuned", 0.1, 0)
    assert pathlib.Path(config.model.pretrained) == converted.resolve()
    # What train() builds first: the model of the run's config, its encoders loaded from the card's directory.
    experiment = Experiment(config)
    model = experiment.build_method(next(iter(experiment.dataset(config.data.split, training=False))))
    for m, encoder in model.encoders().items():
        for a, b in zip(encoder.get_weights(), expected[m], strict=True):
            np.testing.assert_array_equal(a, b)
    # Prepared otherwise than the research code: refused, the card says why.
    config = load_config(ROOT / "configs" / "finetune_tiny.yaml", [*small_world, f"model.pretrained={converted}",
                                                                   "model.backbone=resnet18", "data.normalization=zscore",
                                                                   "data.s2_bands=s2_10"])
    experiment = Experiment(config)
    with pytest.raises(UserError, match="the s1 encoder was trained on input prepared differently"):
        experiment.build_method(next(iter(experiment.dataset(config.data.split, training=False))))
    # Not a run: evaluate.py --run says where such a directory goes instead.
    assert evaluate_main(["--run", str(converted)]) == 2
    assert "converted or exported encoders, not a run" in capsys.readouterr().err


def test_wrapped_and_dataparallel_checkpoints_read_as_their_state_dict(resnet10, torch, tmp_path):
    from sslrs_tf.convert import read_checkpoint

    # As training loops save: the state dict inside a dict beside the epoch, DataParallel's "module." on every key.
    torch.save({"epoch": 200, "state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in resnet10.items()}},
               tmp_path / "wrapped.pth")
    state, wrapper = read_checkpoint(tmp_path / "wrapped.pth")
    assert wrapper == "state_dict" and list(state) == list(resnet10)
    assert all(np.array_equal(state[k], v) and state[k].dtype == v.dtype for k, v in resnet10.items())
    torch.save({"epoch": 200, "optimizer": {}}, tmp_path / "no_weights.pth")
    with pytest.raises(UserError, match="holds no state dict"):
        read_checkpoint(tmp_path / "no_weights.pth")

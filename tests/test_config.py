"""Config validation: one-line errors naming the key and what it accepts."""

import site
import subprocess
import sys

import pytest
import yaml

from sslrs_tf.config import dump_config, find_config, load_config, shipped_configs
from sslrs_tf.errors import UserError
from tests.helpers import ROOT

BASE = {
    "run": {"dir": "runs/x"},
    "train": {"epochs": 2, "batch_size": 8},
    "optimizer": {"lr": 1e-3},
    "data": {"crop_size": 32},
}


def test_defaults_overrides_and_round_trip(tmp_path):
    cfg = load_config(data={k: dict(v) for k, v in BASE.items()},
                      overrides=["train.epochs=5", "data.source=synthetic", "optimizer.lr=3e-5", "data.s2_bands=rgb"])
    assert cfg.train.epochs == 5 and cfg.data.source == "synthetic" and cfg.optimizer.lr == 3e-5
    assert cfg.model.backbone == "resnet18" and cfg.data.synthetic.patches == 400 and cfg.data.s2_bands == "rgb"
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "unknown key train.epoch; did you mean train.epochs?"),
        ("trian.epochs=3", "unknown key trian; did you mean train?"),
        ("train.epochs=three", "train.epochs must be an integer; received 'three'"),
        ("train.epochs=0", "train.epochs must be >= 1; received 0"),
        ("optimizer.lr=-0.1", "optimizer.lr must be > 0.0; received -0.1"),
        ("model.backbone=resnet19", "model.backbone must be one of resnet10, resnet18, resnet34, resnet50, swin_t, swin_micro, vgg, unet; received 'resnet19' (did you mean 'resnet18'?)"),
        ("model.method=simclr2", "model.method must be one of dual_simclr"),
        ("train.deterministic=maybe", "train.deterministic must be true or false"),
        ("data.synthetic=3", "data.synthetic must be a section"),
    ],
)
def test_mistakes_name_the_key_and_what_it_accepts(override, message):
    with pytest.raises(UserError) as err:
        load_config(data={k: dict(v) for k, v in BASE.items()}, overrides=[override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("run: {dir: r}\ntrain: {epochs: 1, batch_size: 2}\noptimizer: {lr: 3e-5}\ndata: {crop_size: 32}\n")
    assert load_config(path).optimizer.lr == pytest.approx(3e-5)
    with pytest.raises(UserError, match="optimizer.lr must be a number; received 'fast'"):
        load_config(path, ["optimizer.lr=fast"])


def test_missing_required_key_and_bad_files(tmp_path):
    with pytest.raises(UserError, match="config: train.batch_size is required"):
        load_config(data={**BASE, "train": {"epochs": 1}})
    with pytest.raises(UserError, match="nope.yaml: no such file$"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("train: [1, 2\n")
    with pytest.raises(UserError, match="is not valid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_a_config_that_is_no_file_is_a_shipped_one_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty folder: nothing to find but the shipped configs
    shipped = shipped_configs()
    assert shipped["dual_simclr"] == ROOT / "configs" / "dual_simclr.yaml" and "protocol_isprs" not in shipped
    assert find_config("protocol_isprs", kind="protocol") == shipped_configs("protocol")["protocol_isprs"]
    assert find_config("dual_simclr.yaml") == find_config("dual_simclr") == shipped["dual_simclr"]
    assert load_config("tiny.yaml").model.backbone == "resnet10"
    # A file in the working folder wins over the shipped config of its name.
    (tmp_path / "tiny.yaml").write_text("run: {dir: mine}\ntrain: {epochs: 1, batch_size: 2}\noptimizer: {lr: 0.1}\n"
                                        "data: {crop_size: 16}\n")
    assert load_config("tiny.yaml").run.dir == "mine"
    with pytest.raises(UserError, match=r"no shipped config 'dual_simclr2'; shipped configs: dual_simclr, dual_simclr_ssl4eo, dual_swin, "):
        find_config("dual_simclr2.yaml")


def test_a_clone_used_without_installing_it_finds_its_configs_by_name(tmp_path):
    # No editable install: python -S reads no .pth file, so sslrs_tf.configs (which only an install
    # maps to configs/) does not exist; the dependencies' folder is put on the path by hand.
    code = (f"import sys; sys.path[:0] = [{str(ROOT)!r}, *{site.getsitepackages()!r}]\n"
            "import importlib.util; assert importlib.util.find_spec('sslrs_tf.configs') is None\n"
            "from sslrs_tf.config import find_config; print(find_config('tiny'))")
    found = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert found.returncode == 0, found.stderr[-2000:]
    assert found.stdout.strip() == str(ROOT / "configs" / "tiny.yaml")


RUN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if not p.name.startswith("protocol_"))


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    config = load_config(path)
    assert config.run.dir and config.train.epochs >= 1
    # On the synthetic world its crop must fit the world's patches, checked before anything is generated.
    size = config.data.crop_size
    assert load_config(path, ["data.source=synthetic", f"data.synthetic.size={size}"]).data.crop_size == size
    with pytest.raises(UserError, match=rf"data.crop_size {size} is larger than the synthetic world's {size - 1} px"):
        load_config(path, ["data.source=synthetic", f"data.synthetic.size={size - 1}"])


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("protocol_*.yaml")), ids=lambda p: p.name)
def test_every_shipped_protocol_loads_and_its_runs_configure(path):
    import pathlib

    from sslrs_tf.evaluation.protocol import MODELS, grid_run_dir, load_protocol, protocol_rows, run_config

    protocol = load_protocol(path)
    for _, model, point in protocol_rows(protocol):
        row = MODELS[model]
        if row.family == "ensemble":  # trains nothing: its members are rows of the protocol
            assert set(row.members) <= set(protocol.models)
            continue
        config = run_config(protocol, protocol.labels[0], model, protocol.label_fractions[0], protocol.seeds[0], point)
        assert config.data.label_fraction == protocol.label_fractions[0]
        if row.family == "baseline":
            assert config.model.pretrained is None
        elif point:  # a grid row: the grid's pre-training run of its point
            assert config.model.pretrained == str(grid_run_dir(protocol, point).resolve())
        else:  # the run the protocol names for the row's pre-training method
            assert config.model.pretrained == str(pathlib.Path(getattr(protocol.pretrained, row.pretrained)).resolve())


def test_a_config_starts_from_its_base_key_by_key(tmp_path):
    (tmp_path / "parent.yaml").write_text(yaml.safe_dump({**BASE, "optimizer": {"lr": 0.1, "encoder_lr": 0.01}}))
    (tmp_path / "sub").mkdir()
    child = tmp_path / "sub" / "child.yaml"
    child.write_text("base: ../parent.yaml\noptimizer:\n  encoder_lr: null\ntrain:\n  epochs: 7\n")
    config = load_config(child, ["train.batch_size=3"])
    assert (config.optimizer.lr, config.optimizer.encoder_lr) == (0.1, None)  # merged key by key; null wins
    assert (config.train.epochs, config.train.batch_size) == (7, 3)
    assert config.run.dir == BASE["run"]["dir"]
    loop = tmp_path / "loop.yaml"
    loop.write_text("base: loop.yaml\n")
    with pytest.raises(UserError, match="includes itself"):
        load_config(loop)
    (tmp_path / "orphan.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(UserError, match="missing.yaml: No such file"):
        load_config(tmp_path / "orphan.yaml")


@pytest.mark.parametrize("model", ["OnlySen-1", "OnlySen-2", "EarlyFusion", "LateFusion"])
def test_each_supervised_baseline_config_is_the_protocols_baseline_run(model):
    from sslrs_tf.evaluation.protocol import MODELS, load_protocol, run_config

    inputs = next(o.split("=")[1] for o in MODELS[model].overrides if o.startswith("model.inputs="))
    protocol = load_protocol(ROOT / "configs" / "protocol_isprs.yaml")
    # The protocol's own overrides (data.class_balance=true) apply to every run it makes.
    shipped = load_config(ROOT / "configs" / f"supervised_{inputs}.yaml", protocol.overrides).to_dict()
    in_protocol = run_config(protocol, "single", model, 1.0, 0).to_dict()
    shipped["run"]["dir"] = in_protocol["run"]["dir"]
    assert shipped == in_protocol

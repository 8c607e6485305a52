"""sslrs_tf.experiment: a run config turned into bands, data and a method; the checks across its sections."""

import numpy as np
import pytest

from sslrs_tf.config import load_config
from sslrs_tf.errors import UserError
from sslrs_tf.experiment import Experiment, check_config
from tests.helpers import ROOT, exported_weights

TINY = ROOT / "configs" / "tiny.yaml"
FINETUNE = ROOT / "configs" / "finetune_tiny.yaml"


@pytest.mark.parametrize(
    "config, overrides, message",
    [
        (TINY, ["model.backbone=vgg"], "model.method dual_simclr is built with model.backbone resnet10 or resnet18"),
        (TINY, ["model.method=mma"], "model.method mma is built with model.backbone vgg; received 'resnet10'"),
        (TINY, ["data.label=single"], "model.method dual_simclr needs data.label null; received 'single'"),
        (FINETUNE, ["data.label=null"], "model.method classifier needs data.label single or multi; received None"),
        (FINETUNE, ["model.method=segmenter"], "model.method segmenter needs data.label segmentation"),
        (TINY, ["model.method=simclr"], "model.method simclr takes 3 s2 bands (e.g. data.s2_bands: rgb); received 13"),
        (TINY, ["model.backbone=swin_t"], "data.crop_size 32 does not fit model.backbone swin_t"),
        (FINETUNE, ["model.method=segmenter", "data.label=segmentation", "data.crop_size=48"],
         "data.crop_size must be a multiple of 32 for model.method segmenter with model.backbone resnet10; received 48"),
        (FINETUNE, ["model.method=segmenter", "data.label=segmentation", "model.backbone=unet",
                    "model.inputs=early_fusion", "data.crop_size=40"], "must be a multiple of 16"),
        (FINETUNE, ["model.freeze=true"], "model.freeze needs model.pretrained"),
        (FINETUNE, ["model.pretrained=runs/x", "model.inputs=early_fusion"],
         "model.pretrained with model.inputs early_fusion: pre-training gives one encoder per sensor"),
        (FINETUNE, ["model.method=segmenter", "data.label=segmentation", "model.backbone=unet"],
         "model.backbone unet is the supervised early-fusion baseline"),
        (FINETUNE, ["train.mixed_precision=mixed_float16"], "optimizer.encoder_lr with train.mixed_precision "
                                                            "mixed_float16 is not supported"),
        (TINY, ["data.normalization=zscore"], "config: data.normalization zscore with data.s2_bands"),
        (TINY, ["data.s2_bands=[B04, B13]"], "config: data bands: s2 has no band 'B13'"),
    ],
)
def test_contradicting_sections_are_one_line_errors_naming_the_keys(config, overrides, message):
    with pytest.raises(UserError) as caught:
        check_config(load_config(config, overrides))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_shipped_configs_pass_the_checks():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        if not path.name.startswith("protocol_"):
            check_config(load_config(path))


def test_a_synthetic_source_has_only_the_builders_datasets(tmp_path):
    config = load_config(ROOT / "configs" / "finetune_eurosat.yaml", ["data.source=synthetic"])
    with pytest.raises(UserError, match="data.source synthetic has sen12ms and dfc2020, not data.dataset eurosat"):
        Experiment(config).source  # noqa: B018


def test_datasets_decode_only_the_sensors_the_method_reads(small_world):
    config = load_config(FINETUNE, [*small_world, "model.inputs=only_s2", "data.s2_bands=rgb"])
    experiment = Experiment(config)
    assert experiment.modalities == ("s2",) and experiment.bands["s2"] == ("B04", "B03", "B02")
    x, y = next(iter(experiment.dataset("test", training=False, batch_size=4)))
    assert set(x) == {"s2"} and x["s2"].shape == (4, 32, 32, 3) and y.shape == (4,)
    inputs = experiment.method_inputs()
    assert inputs.num_classes == len(experiment.source.class_names) == 8 and inputs.image_size is None
    with pytest.raises(UserError, match=r"--split x: .* has no split 'valid'; it has \['test', 'validation'\]"):
        experiment.split_size("valid", "--split x")


def test_the_method_is_built_from_one_batch_with_the_pretrained_encoders_loaded(small_world, pretrained_run):
    config = load_config(FINETUNE, [*small_world, f"model.pretrained={pretrained_run}"])
    experiment = Experiment(config)
    batch = next(iter(experiment.dataset("validation", training=False, batch_size=4)))
    model = experiment.build_method(batch)
    assert model.built and model(batch[0]).shape == (4, 8)
    expected = exported_weights(pretrained_run, "s1", "s2")
    got = [w for m in ("s1", "s2") for w in model.encoders()[m].get_weights()]
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    # Evaluation restores every weight itself: nothing is loaded.
    fresh = experiment.build_method(batch, pretrained=False)
    assert not np.array_equal(fresh.encoders()["s2"].get_weights()[0], expected[len(got) // 2])

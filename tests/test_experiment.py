"""sslrs_tf.experiment: a run config turned into bands, data and a method; the checks across its sections."""

import json

import numpy as np
import pytest

from sslrs_tf.config import load_config
from sslrs_tf.data.bands import S2_BANDS
from sslrs_tf.errors import UserError
from sslrs_tf.experiment import Experiment, apply_card, check_config
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
        (TINY, ["data.class_balance=true"], "data.class_balance evens out the classes of "
                                                                  "labels: it needs data.label"),
        (FINETUNE, ["model.method=segmenter", "data.label=segmentation", "model.backbone=unet"],
         "model.backbone unet is the supervised early-fusion baseline"),
        (TINY, ["data.normalization=zscore"], "config: data.normalization zscore with data.s2_bands"),
        (TINY, ["data.s2_bands=[B04, B13]"], "config: data bands: s2 has no band 'B13'"),
        (TINY, ["train.jit_compile=true"], "config: train.jit_compile=true needs train.deterministic=false"),
        (FINETUNE, ["model.pretrained_adapters=random"], "model.pretrained_adapters random says what to do with"),
        (FINETUNE, ["model.freeze_stages=2", "model.backbone=vgg"], "model.freeze_stages freezes part of a ResNet"),
        (FINETUNE, ["data.label_count=10", "data.label_fraction=0.5"], "data.label_count and data.label_fraction"),
        (TINY, ["data.label_scheme=igbp"], "data.label_scheme is about labels: it needs data.label"),
        (TINY, ["data.label_count=10"], "data.label_count is about labels: it needs data.label"),
        (TINY, ["model.augmentation=set1"], "model.augmentation is MoCo's (model.method moco_*)"),
        (TINY, ["model.method=moco_sensor", "model.adapter_trainable=true"],
         "model.adapter_trainable trains MoCo's 1x1 adapters: it needs a moco_* method and model.adapters true"),
        (FINETUNE, ["model.pretrained=runs/x", "model.pretrained_adapters=drop", "model.freeze_stages=1"],
         "model.freeze_stages would keep the first convolution at its random start"),
        (TINY, ["model.method=moco_single"], "config: model.method moco_single reads one sensor: model.inputs "
                                             "only_s1 or only_s2; received late_fusion"),
        (TINY, ["model.method=moco_fusion", "model.augmentation=none"],
         "config: model.method moco_fusion makes query and key from one image: model.augmentation cannot be none"),
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


def test_the_own_data_page_s_commands_pass_the_checks():
    # docs/own_data.md: the shipped configs pointed at a paired-chips dataset (its e2e runs the tiny ones).
    data = ["data.dataset=paired_chips", "data.config=mine", "data.split=train"]
    check_config(load_config(ROOT / "configs" / "dual_simclr.yaml",
                             [*data, "data.validation_dataset=null", "data.validation_split=test"]))
    check_config(load_config(ROOT / "configs" / "finetune_classification.yaml",
                             [*data, "model.pretrained=runs/mine_pre"]))


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


@pytest.mark.parametrize("fused", [False, True])
def test_model_fused_batch_norm_switches_every_batch_norm_of_every_encoder_to_the_fused_kernel(small_world, fused):
    import keras
    import tensorflow as tf

    experiment = Experiment(load_config(TINY, [*small_world, f"model.fused_batch_norm={fused}"]))
    model = experiment.build_method(next(iter(experiment.dataset("train", training=True, batch_size=2))))
    for encoder in model.encoders().values():
        layers = [x for x in encoder._flatten_layers() if isinstance(x, keras.layers.BatchNormalization)]
        spec = tf.TensorSpec([2, 32, 32, encoder.inputs[0].shape[-1]])
        graph = tf.function(lambda x, e=encoder: e(x, training=True)).get_concrete_function(spec).graph
        fused_ops = sum(op.type == "FusedBatchNormV3" for op in graph.get_operations())
        assert len(layers) > 10 and fused_ops == (len(layers) if fused else 0)


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


def card(folder, method, backbone, encoders, normalization="per_sample_max", size=None, **extra):
    """A card.json as a pre-training run exports it: `encoders` maps an encoder name to its bands (a stacked
    encoder to {sensor: bands})."""
    def described(bands):
        return {"bands": bands, "clip": [0, 1], "method": normalization, "fill_nan": True}

    entries = {}
    for name, bands in encoders.items():
        described_input = ({"stacked": list(bands), **{m: described(b) for m, b in bands.items()}}
                           if isinstance(bands, dict) else described(bands))
        channels = sum(map(len, bands.values())) if isinstance(bands, dict) else len(bands)
        entries[name] = {"file": f"encoder_{name}.keras", "input": described_input,
                         "input_shape": [None, size, size, channels], "output": {"pooled": [None, 32]}}
    folder.mkdir(parents=True)
    (folder / "card.json").write_text(json.dumps({"method": method, "backbone": backbone, "encoders": entries,
                                                  **extra}))
    return folder


S1, S2_10, RGB = ["VV", "VH"], ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"], \
    ["B04", "B03", "B02"]


def finetune(*overrides, config=FINETUNE):
    return load_config(config, overrides)


def test_a_card_sets_backbone_bands_normalisation_and_inputs_and_says_so_in_one_line(tmp_path):
    mma = card(tmp_path / "mma", "mma", "vgg", {"s1": S1, "s2": S2_10}, embedding_dim=32)
    config, line = apply_card(finetune(f"model.pretrained={mma}"))
    assert (config.model.backbone, config.model.embedding_dim, config.model.inputs) == ("vgg", 32, "late_fusion")
    assert config.data.s2_bands == S2_10 and config.data.normalization == "per_sample_max"
    assert line == (f"model.pretrained {mma} (mma vgg): from its card: model.backbone=vgg, model.embedding_dim=32, "
                    f"data.s2_bands=[{', '.join(S2_10)}]")
    check_config(config)  # the result is a valid run config

    simclr = card(tmp_path / "simclr", "simclr", "resnet10", {"s2": RGB}, normalization="fixed")
    config, line = apply_card(finetune(f"model.pretrained={simclr}"))
    assert (config.model.inputs, config.data.s2_bands, config.data.normalization) == ("only_s2", RGB, "fixed")
    assert "model.inputs=only_s2" in line and "\n" not in line

    fusion = card(tmp_path / "fusion", "moco_fusion", "resnet10", {"s1s2": {"s1": S1, "s2": S2_10}},
                  normalization="zscore", adapters=True)
    config, _ = apply_card(finetune(f"model.pretrained={fusion}"))
    assert (config.model.inputs, config.model.adapters, config.data.s2_bands) == ("early_fusion", True, S2_10)
    assert config.data.normalization == "zscore"

    # The MoCo work's variants: Moco_1x1Rnd keeps the adapters (random), Moco drops them; neither from a run without.
    config, line = apply_card(finetune(f"model.pretrained={fusion}", "model.pretrained_adapters=drop"))
    assert config.model.adapters is False and "model.adapters" not in line
    config, _ = apply_card(finetune(f"model.pretrained={fusion}", "model.pretrained_adapters=random"))
    assert config.model.adapters is True
    with pytest.raises(UserError, match="model.pretrained_adapters=drop needs encoders with 1x1 adapters"):
        apply_card(finetune(f"model.pretrained={mma}", "model.pretrained_adapters=drop"))

    swin = card(tmp_path / "swin", "dual_simclr", "swin_micro", {"s1": S1, "s2": RGB}, size=64)
    config, _ = apply_card(finetune(f"model.pretrained={swin}"))
    assert (config.model.backbone, config.data.crop_size) == ("swin_micro", 64)


def test_a_config_already_as_the_card_is_unchanged_and_a_subset_of_its_encoders_is_kept(tmp_path):
    dual = card(tmp_path / "dual", "dual_simclr", "resnet10", {"s1": S1, "s2": list(S2_BANDS)})
    config = finetune(f"model.pretrained={dual}", "model.inputs=only_s1")
    same, line = apply_card(config, explicit={"model.inputs"})
    assert same == config and line.endswith("from its card: nothing to change")
    # Without model.pretrained, or for a pre-training method, nothing is read.
    assert apply_card(finetune()) == (finetune(), None)
    assert apply_card(load_config(TINY))[1] is None


@pytest.mark.parametrize(
    "overrides, explicit, message",
    [
        (["model.backbone=resnet18"], {"model.backbone"},
         "model.backbone=resnet18 contradicts model.pretrained {card}, whose encoders were trained with backbone vgg"),
        (["data.normalization=zscore"], {"data.normalization"}, "data.normalization=zscore contradicts"),
        (["data.s2_bands=rgb"], {"data.s2_bands"}, "data.s2_bands=rgb contradicts model.pretrained"),
        (["model.inputs=early_fusion"], {"model.inputs"},
         "model.inputs=early_fusion needs the encoders s1s2; model.pretrained {card} has s1, s2"),
    ],
)
def test_a_card_contradicting_the_command_line_is_refused_naming_both(tmp_path, overrides, explicit, message):
    mma = card(tmp_path / "mma", "mma", "vgg", {"s1": S1, "s2": S2_10}, embedding_dim=32)
    with pytest.raises(UserError) as caught:
        apply_card(finetune(f"model.pretrained={mma}", *overrides), explicit)
    assert message.format(card=mma / "card.json") in str(caught.value) and "\n" not in str(caught.value)
    # The same values from the config file (not the command line) give way to the card.
    config, _ = apply_card(finetune(f"model.pretrained={mma}", *overrides))
    assert config.model.backbone == "vgg"


def test_the_published_pretraining_data_is_every_sen12ms_patch_watched_on_dfc2020_validation_pairs(small_world):
    config = load_config(ROOT / "configs" / "dual_simclr.yaml", [*small_world, "model.backbone=resnet10",
                                                                 "data.crop_size=32", "train.batch_size=8"])
    assert (config.data.split, config.data.validation_dataset, config.data.validation_split) == \
        ("train+holdout", "dfc2020", "validation")
    experiment = Experiment(config)
    sen12ms, dfc2020 = experiment.source, experiment.validation_source
    assert "sen12ms" in sen12ms.full_name and "dfc2020" in dfc2020.full_name
    every = set(sen12ms.split_ids("train")) | set(sen12ms.split_ids("holdout"))
    assert experiment.training_size("train+holdout", "config: data.split") == len(every)
    read = {i.decode() for x in experiment.dataset("train+holdout", training=False, with_ids=True)
            for i in x["id"].numpy()}
    assert read == every
    validation = list(experiment.dataset("validation", training=False, with_ids=True))
    assert {i.decode() for x in validation for i in x["id"].numpy()} == set(dfc2020.split_ids("validation"))
    assert set(validation[0]) == {"s1", "s2", "id"}  # unlabelled pairs for the retrieval metrics
    assert experiment.split_size("validation", "config: data.validation_split") == dfc2020.num_examples("validation")
    with pytest.raises(UserError, match="config: data.split: .* has no split 'hold'"):
        experiment.split_size("train+hold", "config: data.split")
    with pytest.raises(UserError, match="data.validation_dataset dfc2020 goes with data.dataset sen12ms or dfc2020"):
        check_config(load_config(ROOT / "configs" / "finetune_eurosat.yaml", ["data.validation_dataset=dfc2020"]))


def test_the_synthetic_world_has_sen12ms_s_non_overlapping_subset(small_world):
    import rasterio

    from sslrs_tf.data import layout

    def ids(config):
        experiment = Experiment(load_config(TINY, [*small_world, f"data.config={config}"]))
        batches = experiment.dataset("train", training=False, batch_size=64, with_ids=True)
        return {i.decode() for x in batches for i in x["id"].numpy()}

    everything, subset = ids("all"), ids("nonoverlapping")
    assert ids("unlabelled") == everything  # the same patches, without lc
    unlabelled = Experiment(load_config(TINY, [*small_world, "data.config=unlabelled"]))
    assert "lc" not in unlabelled.source.builder.info.features
    with pytest.raises(UserError, match="data.config spring: the synthetic world's sen12ms is built as all, "
                                        "nonoverlapping, unlabelled"):
        ids("spring")
    assert subset < everything and len(subset) < 0.8 * len(everything)
    # No two kept patches overlap (their footprints from the world's own files, compared pairwise).
    world = next(o.split("=", 1)[1] for o in small_world if o.startswith("data.synthetic.dir="))
    boxes = []
    for key in subset:
        season, scene, patch = key.split("_")
        path = f"{world}/sen12ms/{layout.sen12ms_path(season, 's2', int(scene), int(patch[1:]))}"
        with rasterio.open(path) as src:
            boxes.append((str(src.crs), np.array(src.bounds)))
    for i, (crs, a) in enumerate(boxes):
        for other, b in boxes[:i]:
            assert crs != other or min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1])

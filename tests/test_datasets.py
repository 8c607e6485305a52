"""Datasets by name: `python -m sslrs_tf.datasets` (the real entry point, its output, its one-line errors),
opening built, unbuilt and unknown datasets."""

import pathlib
import subprocess
import sys

import pytest
import tensorflow_datasets as tfds

from sslrs_tf.data.sources import SentinelSource
from sslrs_tf.datasets import make_dataset, open_source
from sslrs_tf.errors import UserError
from tests.helpers import SEN12MS_DUMMY, copy_tree


def run(*args):
    return subprocess.run([sys.executable, "-m", "sslrs_tf.datasets", *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(result, *needles):
    assert result.returncode == 2, result.stderr[-1000:]
    lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_builds_a_subset_from_one_json_flag_and_reuses_it(tmp_path):
    config = '{"name": "spring32", "seasons": ["spring"], "patch_size": 32, "holdout_fraction": 0}'
    first = run("sen12ms", "--manual_dir", SEN12MS_DUMMY, "--data_dir", tmp_path, "--config", config)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "sen12ms/spring32/1.0.0 ready" in first.stdout
    built = tfds.builder_from_directory(str(tmp_path / "sen12ms" / "spring32" / "1.0.0"))
    assert built.info.splits["train"].num_examples == 2  # spring: 3 triplets, one without s2
    again = run("sen12ms", "--manual_dir", tmp_path / "nowhere", "--data_dir", tmp_path, "--config", config)
    assert again.returncode == 0 and "sen12ms/spring32/1.0.0 already built, reused" in again.stdout  # no manual folder needed


def test_user_errors_are_one_line(tmp_path):
    assert_one_line_error(run("sen12ms", "--manual_dir", tmp_path / "nowhere", "--data_dir", tmp_path,
                              "--config", '{"patch_size": 32}'), "nowhere does not exist")
    assert_one_line_error(run("sen99", "--manual_dir", tmp_path, "--data_dir", tmp_path), "unknown dataset 'sen99'")
    assert_one_line_error(run("sen12ms", "--manual_dir", tmp_path, "--data_dir", tmp_path, "--config", "{oops"),
                          "--config is not valid JSON")
    assert_one_line_error(run("sen12ms", "--manual_dir", tmp_path, "--data_dir", tmp_path, "--config",
                              '{"season": ["spring"]}'), "season")
    assert_one_line_error(run("sen12ms", "--manual_dir", tmp_path, "--data_dir", tmp_path, "--config",
                              '{"name": "spring", "patch_size": 32}'), "Cannot name a custom BuilderConfig")


def test_a_broken_file_is_one_line_naming_it(tmp_path):
    manual = copy_tree(SEN12MS_DUMMY, tmp_path / "manual")
    # An s1 file of a complete triplet (the dummy data has one triplet without s2, skipped unread).
    victim = next(p for p in sorted(manual.rglob("*_s1_*.tif"))
                  if p.parent.parent.joinpath(p.parent.name.replace("s1_", "s2_"), p.name.replace("_s1_", "_s2_")).exists())
    victim.write_bytes(victim.read_bytes()[:100])
    result = run("sen12ms", "--manual_dir", manual, "--data_dir", tmp_path / "out", "--config", '{"patch_size": 32}')
    assert_one_line_error(result, str(victim), "cannot be read as a GeoTIFF")


def test_opening_a_dataset_by_name_by_folder_or_builder_gives_the_same_source(built, tmp_path):
    builder = built["dfc2020"]
    root = pathlib.Path(builder.data_dir).parents[2]  # DATA_DIR/dfc2020/dummy/1.0.0
    by_name = open_source("dfc2020", root, {"name": "dummy", "patch_size": 32})
    by_folder = open_source(builder.data_dir)
    for source in (by_name, by_folder, open_source(builder)):
        assert isinstance(source, SentinelSource)
        assert source.num_examples("validation") == builder.info.splits["validation"].num_examples
    x, y = next(iter(make_dataset(builder.data_dir, "validation", training=False, label="single", batch_size=2)))
    assert x["s2"].shape == (2, 32, 32, 13) and y.shape == (2,)


def test_unbuilt_and_unknown_datasets_say_what_to_do(tmp_path):
    with pytest.raises(UserError, match=r"is not built in .*tfds build tfds_builders/dfc2020"):
        make_dataset("dfc2020", "test", data_dir=str(tmp_path))
    with pytest.raises(UserError, match="unknown dataset 'sen13ms'; expected one of sen12ms, dfc2020, paired_chips, ssl4eo_s12, eurosat"):
        open_source("sen13ms", str(tmp_path))
    with pytest.raises(UserError, match="is not a dataset: expected a built dataset folder"):
        open_source(tmp_path)


def test_a_builder_from_a_config_object_does_not_warn_about_its_custom_config(tmp_path, caplog):
    import logging

    from sslrs_tf.datasets import make_builder

    with caplog.at_level(logging.WARNING):
        logging.getLogger("absl").warning("Using custom data configuration: caught")  # what TFDS logs
        make_builder("sen12ms", tmp_path, {"name": "spring_only", "seasons": ["spring"]})
    warned = [r.getMessage() for r in caplog.records if "custom data configuration" in r.getMessage()]
    assert warned == ["Using custom data configuration: caught"]

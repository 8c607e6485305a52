"""The datasets by name: SEN12MS and DFC2020 (the builders of ``tfds_builders/``), EuroSAT and
BigEarthNet (the TFDS catalog), and the synthetic world built into the first two.

This module sits above both :mod:`sslrs_tf.data` and ``tfds_builders/`` (whose builders use
:mod:`sslrs_tf.data`): it is the one place that knows a dataset's name.

    python -m sslrs_tf.datasets sen12ms --manual_dir DIR --data_dir OUT [--config '{"seasons": ["spring"]}']

builds a dataset with the TFDS Python API, as ``tfds build tfds_builders/<name> --manual_dir DIR
--data_dir OUT`` does from the TFDS command line (which needs the ``cli`` extra), and reports bad
input as one line instead of a traceback.

Example:
>>> from sslrs_tf.datasets import make_dataset
>>> ds = make_dataset("sen12ms", "train", data_dir="data/tfds", config="all", crop_size=128, batch_size=200)
"""

import argparse
import contextlib
import json
import logging
import pathlib
import sys

import tensorflow_datasets as tfds
from etils import epath

from sslrs_tf.errors import UserError, run_entry_point

#: the datasets of tfds_builders/
BUILDERS = ("sen12ms", "dfc2020", "paired_chips", "ssl4eo_s12")
#: those the synthetic world builds
WORLD = ("sen12ms", "dfc2020")


def make_builder(name, data_dir, config=None):
    """The builder of dataset `name` (one of :data:`BUILDERS`) in `data_dir`, prepared or not.

    Args:
        config: a config name (``all``, ``spring``, ...), a config object, or a dict
            of config arguments (e.g. ``{"name": "spring_10", "seasons": ["spring"], "scene_fraction": 0.1}``).
    """
    from tfds_builders import dfc2020, paired_chips, sen12ms, ssl4eo_s12  # imported late: TFDS registers them

    classes = {"sen12ms": (sen12ms.Builder, sen12ms.Sen12msConfig), "dfc2020": (dfc2020.Builder, dfc2020.Dfc2020Config),
               "paired_chips": (paired_chips.Builder, paired_chips.PairedChipsConfig),
               "ssl4eo_s12": (ssl4eo_s12.Builder, ssl4eo_s12.Ssl4eoS12Config)}
    if name not in classes:
        raise UserError(f"unknown dataset {name!r}; expected one of {sorted(classes)}")
    cls, config_cls = classes[name]
    if isinstance(config, dict):
        try:
            config = config_cls(**{"name": "custom", **config})
        except TypeError as err:  # an unknown config argument
            raise UserError(f"builder config: {err}") from None
    try:
        with _without_harmless_tfds_notes():
            return cls(config=config, data_dir=None if data_dir is None else str(data_dir))
    except ValueError as err:  # e.g. a custom config named like a built-in one
        raise UserError(f"builder config: {str(err).splitlines()[0]}") from None


class _HarmlessTfdsNotes(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("Using custom data configuration")
                    or (message.startswith("Variant folder ") and message.endswith(" has no dataset_info.json")))


@contextlib.contextmanager
def _without_harmless_tfds_notes():
    """TFDS warns "Using custom data configuration" on every builder made from a config object, which
    the synthetic world and dict configs are on purpose (the quick start printed it dozens of times),
    and "Variant folder ... has no dataset_info.json" for a dataset not built yet, which is then
    built or named in our own error."""
    quiet = _HarmlessTfdsNotes()
    logger = logging.getLogger("absl")
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def build(name, manual_dir, data_dir, config=None):
    """Builds dataset `name` from `manual_dir` into `data_dir` (see :func:`make_builder`); returns the builder.

    An already built dataset is reused; one built under the same name with other config arguments (the
    builders that record theirs: paired chips, SSL4EO-S12) is refused, naming the difference.
    """
    builder = make_builder(name, data_dir, config)
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
        return builder
    stored = (builder.info.metadata or {}).get("config")
    wanted = getattr(builder.builder_config, "arguments", None)
    if stored is not None and wanted is not None and stored != wanted:
        key = next(k for k in sorted(set(stored) | set(wanted)) if stored.get(k) != wanted.get(k))
        raise UserError(f"{builder.info.full_name} in {builder.data_dir} was built with {key}={stored.get(key)!r}, "
                        f"not {wanted.get(key)!r}; give the config another name, or delete that folder to rebuild")
    return builder


def synthetic_config(size):
    """The builder config (arguments) of the synthetic world's datasets at patch `size`."""
    return {"name": f"synthetic{size}", "patch_size": size}


def prepare_world(world_dir, data_dir, params):
    """Writes the synthetic world unless an identical one is there, then builds both datasets.

    Args:
        params: arguments of :func:`sslrs_tf.data.synthetic.generate` (patches, size, seed, ...).

    Returns:
        ``{"sen12ms": builder, "dfc2020": builder}``.
    """
    from sslrs_tf.data import synthetic

    world_dir, data_dir = pathlib.Path(world_dir), pathlib.Path(data_dir)
    manifest = world_dir / "world.json"
    expected = {"synthetic": True, **params}
    if not manifest.exists() or json.loads(manifest.read_text()) != expected:
        print(f"writing the synthetic world to {world_dir} ...", flush=True)
        synthetic.generate(world_dir, **params)
    config = synthetic_config(params["size"])
    return {name: build(name, world_dir / name, data_dir, config) for name in WORLD}


def _built_custom(name, data_dir, config):
    """The prepared builder of a config built from arguments (``--config '{"name": "floods", ...}'``), found by
    its name in `data_dir` (its newest version), or None: a config the builder class defines is opened by it."""
    from tfds_builders import dfc2020, paired_chips, sen12ms, ssl4eo_s12

    module = {"sen12ms": sen12ms, "dfc2020": dfc2020, "paired_chips": paired_chips, "ssl4eo_s12": ssl4eo_s12}[name]
    defined = [c.name for c in module.Builder.BUILDER_CONFIGS]
    if not isinstance(config, str) or data_dir is None or config in defined:
        return None
    folder = epath.Path(data_dir) / name / config  # epath: a bucket (gs://) as well as a local folder
    found = folder.iterdir() if folder.is_dir() else ()
    versions = sorted((p for p in found if (p / "dataset_info.json").exists()),
                      key=lambda p: tuple(int(x) for x in p.name.split(".") if x.isdigit()))
    if not versions:
        named = f"its configs: {', '.join(defined)}, or one " if name != "paired_chips" else "one "
        raise UserError(f"dataset {name}/{config} is not built in {data_dir} ({named}built with `python -m "
                        f"sslrs_tf.datasets {name} --manual_dir DIR --data_dir {data_dir} --config '{{\"name\": "
                        f"\"{config}\", ...}}'`; docs/own_data.md)")
    return tfds.builder_from_directory(str(versions[-1]))


def open_source(dataset, data_dir=None, config=None):
    """The :class:`~sslrs_tf.data.sources.Source` the input pipeline reads dataset `dataset` from.

    Args:
        dataset: ``"sen12ms"``, ``"dfc2020"`` (built in `data_dir` with `config`), a catalog
            dataset (``"eurosat"``, ``"bigearthnet"``), or anything
            :func:`sslrs_tf.data.pipeline.as_source` takes (a Source, a TFDS builder, a built
            dataset folder).
        data_dir: TFDS data folder, for a dataset given by name.
        config: builder config name, object or dict, for ``sen12ms`` and ``dfc2020``.

    Raises:
        UserError: the dataset is unknown or has not been built in `data_dir`.
    """
    # The readers load TensorFlow; imported here, so that the command line answers a mistake at once.
    from sslrs_tf.data import pipeline
    from sslrs_tf.data.catalog import CATALOG, CatalogSource

    if isinstance(dataset, str) and dataset in CATALOG:
        return CatalogSource(dataset, data_dir)
    if isinstance(dataset, str) and dataset in BUILDERS:
        built = _built_custom(dataset, data_dir, config)
        if built is not None:
            return pipeline.as_source(built)
        builder = make_builder(dataset, data_dir, config)
        with _without_harmless_tfds_notes():
            prepared = builder.is_prepared()
        if not prepared:
            raise UserError(
                f"dataset {builder.info.full_name} is not built in {builder.data_dir}; build it with "
                f"`tfds build tfds_builders/{dataset} --manual_dir DIR --data_dir {data_dir}`")
        return pipeline.as_source(builder)
    if isinstance(dataset, str) and not pathlib.Path(dataset).exists():
        raise UserError(f"unknown dataset {dataset!r}; expected one of {', '.join((*BUILDERS, *CATALOG))} "
                        "or a built dataset folder")
    return pipeline.as_source(dataset)


def make_dataset(dataset, split, *, data_dir=None, config=None, **kwargs):
    """:func:`sslrs_tf.data.pipeline.make_dataset` of a dataset given by name (see :func:`open_source`).

    Example:
    >>> pretrain = make_dataset("sen12ms", "train", data_dir="~/tensorflow_datasets", config="all",
    ...                         crop_size=128, batch_size=200, seed=0)
    >>> finetune = make_dataset("dfc2020", "validation", data_dir="~/tensorflow_datasets", config="default",
    ...                         crop_size=128, batch_size=32, label="single", label_fraction=0.1)
    """
    from sslrs_tf.data import pipeline

    return pipeline.make_dataset(open_source(dataset, data_dir, config), split, **kwargs)


def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Build SEN12MS, DFC2020, SSL4EO-S12 or your own chips as a TFDS "
                                                 "dataset.")
    parser.add_argument("dataset", help="sen12ms, dfc2020, ssl4eo_s12 or paired_chips")
    parser.add_argument("--manual_dir", required=True, help="folder holding the extracted archives or your chips")
    parser.add_argument("--data_dir", required=True, help="TFDS data folder to write")
    parser.add_argument("--config", default=None, help="config name or JSON object of config arguments")
    args = parser.parse_args(argv)

    def action():
        config = args.config
        if config and config.lstrip().startswith("{"):
            try:
                config = json.loads(config)
            except json.JSONDecodeError as err:
                raise UserError(f"--config is not valid JSON: {err}") from None
        with _without_harmless_tfds_notes():
            before = make_builder(args.dataset, args.data_dir, config).is_prepared()
        builder = build(args.dataset, args.manual_dir, args.data_dir, config)
        splits = ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items())
        how = "already built, reused (delete the folder to rebuild)" if before else "ready"
        print(f"{builder.info.full_name} {how} in {builder.data_dir}: {splits}")

    return run_entry_point(action)


if __name__ == "__main__":
    sys.exit(main())

"""Building SEN12MS and DFC2020 with the TFDS Python API, with one-line errors.

``tfds build tfds_builders/<name> --manual_dir DIR --data_dir OUT`` does the same
from the TFDS command line (it needs the ``cli`` extra); this entry point needs
neither Apache Beam nor mlcroissant, and reports bad input as one line instead
of a traceback:

    python -m sslrs_tf.data.build sen12ms --manual_dir DIR --data_dir OUT [--config '{"seasons": ["spring"]}']
"""

import argparse
import json
import pathlib
import sys

import tensorflow_datasets as tfds

from sslrs_tf.errors import UserError


def make_builder(name, data_dir, config=None):
    """The builder of dataset `name` (``sen12ms`` or ``dfc2020``) in `data_dir`, prepared or not.

    Args:
        config: a config name (``all``, ``spring``, ...), a config object, or a dict
            of config arguments (e.g. ``{"name": "spring_10", "seasons": ["spring"], "scene_fraction": 0.1}``).
    """
    from tfds_builders import dfc2020, sen12ms  # imported late: registers the builders

    classes = {"sen12ms": (sen12ms.Builder, sen12ms.Sen12msConfig), "dfc2020": (dfc2020.Builder, dfc2020.Dfc2020Config)}
    if name not in classes:
        raise UserError(f"unknown dataset {name!r}; expected one of {sorted(classes)}")
    cls, config_cls = classes[name]
    if isinstance(config, dict):
        config = config_cls(**{"name": "custom", **config})
    try:
        return cls(config=config, data_dir=None if data_dir is None else str(data_dir))
    except ValueError as err:  # e.g. a custom config named like a built-in one
        raise UserError(f"config: {str(err).splitlines()[0]}") from None


def build(name, manual_dir, data_dir, config=None):
    """Builds dataset `name` from `manual_dir` into `data_dir` (see :func:`make_builder`); returns the builder.

    An already built dataset is reused.
    """
    builder = make_builder(name, data_dir, config)
    if not builder.is_prepared():
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    return builder


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
    config = {"name": f"synthetic{params['size']}", "patch_size": params["size"]}
    return {name: build(name, world_dir / name, data_dir, config) for name in ("sen12ms", "dfc2020")}


def main(argv=None):
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description="Build SEN12MS or DFC2020 as a TFDS dataset.")
    parser.add_argument("dataset", help="sen12ms or dfc2020")
    parser.add_argument("--manual_dir", required=True, help="folder holding the extracted archives")
    parser.add_argument("--data_dir", required=True, help="TFDS data folder to write")
    parser.add_argument("--config", default=None, help="config name or JSON object of config arguments")
    args = parser.parse_args(argv)
    try:
        config = args.config
        if config and config.lstrip().startswith("{"):
            try:
                config = json.loads(config)
            except json.JSONDecodeError as err:
                raise UserError(f"--config is not valid JSON: {err}") from None
        builder = build(args.dataset, args.manual_dir, args.data_dir, config)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TypeError as err:  # an unknown config argument
        print(f"error: --config: {err}", file=sys.stderr)
        return 2
    splits = ", ".join(f"{k} {v.num_examples}" for k, v in builder.info.splits.items())
    print(f"{builder.info.full_name} ready in {builder.data_dir}: {splits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `pip install .` ships: every package of the source tree, the configs, the console commands.

The wheel itself is built, installed into a fresh environment and used from an empty folder by
tests/e2e/test_installed_package.py; these are the quick checks of setup.cfg behind it.
"""

import configparser

from tests.helpers import ROOT


def setup_options():
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def test_setup_cfg_lists_every_package_of_the_source_tree():
    listed = set(setup_options()["options"]["packages"].split())
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("sslrs_tf", "tfds_builders")
             for p in ROOT.joinpath(top).rglob("__init__.py")}
    assert listed == found | {"sslrs_tf.configs"}, listed ^ (found | {"sslrs_tf.configs"})
    assert setup_options()["options"]["package_dir"].split() == ["sslrs_tf.configs", "=", "configs"]


def test_the_console_commands_are_the_scripts_entry_points():
    import evaluate
    import train
    from sslrs_tf import cli

    scripts = dict(line.split(" = ") for line in setup_options()["options.entry_points"]["console_scripts"].split("\n")
                   if line)
    assert scripts == {"sslrs-train": "sslrs_tf.cli:train_main", "sslrs-evaluate": "sslrs_tf.cli:evaluate_main",
                       "sslrs-predict": "sslrs_tf.predict:main", "sslrs-embed": "sslrs_tf.embed:main",
                       "sslrs-export": "sslrs_tf.export:main"}
    assert train.main is cli.train_main and evaluate.main is cli.evaluate_main
    # Each named function exists and is the module's `python -m` entry point.
    import importlib

    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), target

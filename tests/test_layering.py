"""The package's layers only look down: each module imports only from its own layer or those below.

Read from the source (every ``import``, including those inside functions), so a new upward
import fails here rather than becoming an import cycle later.
"""

import ast

import pytest

from tests.helpers import ROOT

#: lowest first: a module may import from its own layer and the layers before it
LAYERS = [
    ("sslrs_tf.errors", "sslrs_tf.malloc", "sslrs_tf.config", "sslrs_tf.configs"),
    ("sslrs_tf.data", "sslrs_tf.losses", "sslrs_tf.metrics"),
    ("sslrs_tf.models",),
    ("sslrs_tf.methods", "tfds_builders"),
    ("sslrs_tf.datasets",),
    ("sslrs_tf.experiment",),
    ("sslrs_tf.training",),
    ("sslrs_tf.evaluation", "sslrs_tf.inference"),
    ("sslrs_tf.cli", "sslrs_tf.quickstart", "sslrs_tf.convert", "sslrs_tf.export", "sslrs_tf.predict",
     "sslrs_tf.embed"),
    ("train", "evaluate"),
]


def layer(module):
    """The index in LAYERS of a module name (the package itself, ``sslrs_tf``, is below everything)."""
    if module == "sslrs_tf":
        return -1
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None  # not ours (tensorflow, numpy, ...)


def modules():
    """``{module name: source path}`` of the package, the builders and the two scripts (tests excluded)."""
    builders = ROOT / "tfds_builders"
    paths = [*ROOT.joinpath("sslrs_tf").rglob("*.py"), *builders.glob("*/*_builder.py"), *builders.glob("*/__init__.py"),
             builders / "__init__.py", builders / "make_dummy_data.py", ROOT / "train.py", ROOT / "evaluate.py"]
    out = {}
    for path in paths:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(path):
    """Every module name `path` imports, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", sorted(modules()))
def test_no_module_imports_from_a_layer_above_its_own(module):
    own = layer(module)
    assert own is not None, f"{module} is in no layer of LAYERS: add it"
    upward = sorted(name for name in imports(modules()[module]) if (layer(name) is not None and layer(name) > own))
    assert not upward, f"{module} (layer {LAYERS[own]}) imports {upward}"


def test_evaluation_uses_the_experiment_not_the_training_driver():
    # The protocol trains its runs with the function its caller hands it (sslrs_tf.training.run.train).
    for module, path in modules().items():
        if module.startswith("sslrs_tf.evaluation"):
            assert "sslrs_tf.training.run" not in imports(path), module


def test_the_check_sees_an_upward_import():
    # The test's own machinery: data importing the training driver would be refused.
    assert layer("sslrs_tf.training.run") > layer("sslrs_tf.data.pipeline")
    assert layer("sslrs_tf.data.sources") < layer("sslrs_tf.methods.base") < layer("sslrs_tf.experiment")

"""Test-session set-up shared by tests/ and tfds_builders/.

Two logical CPU devices are created before TensorFlow initialises anything, so
that distribution tests can run real ``tf.distribute`` strategies on one CPU; XLA
compiles quickly rather than well.
"""

import os

# XLA's CPU code generation at its lowest optimisation, for shorter compiles: the tests compile steps with XLA to
# show that they compile (tests/methods/test_xla.py), not how fast the compiled code runs.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")

import sslrs_tf  # noqa: E402, F401  (its TF settings must come before TensorFlow loads)
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_collection_modifyitems(config, items):
    """Drops tf.test.TestCase's `test_session`: a helper the TFDS harness uses, not a test (pytest lists it as skipped)."""
    items[:] = [item for item in items if item.name != "test_session"]

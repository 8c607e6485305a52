"""Test-session set-up shared by tests/ and tfds_builders/.

Two logical CPU devices are created before TensorFlow initialises anything, so
that distribution tests can run real ``tf.distribute`` strategies on one CPU.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_collection_modifyitems(config, items):
    """Drops tf.test.TestCase's `test_session`: a helper the TFDS harness uses, not a test (pytest lists it as skipped)."""
    items[:] = [item for item in items if item.name != "test_session"]

"""Test-session set-up shared by tests/ and tfds_builders/.

Two logical CPU devices are created before TensorFlow initialises anything, so
that distribution tests can run real ``tf.distribute`` strategies on one CPU.
"""

import sslrs_tf  # noqa: F401  (its TF settings must come before TensorFlow loads)
import tensorflow as tf

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(_cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)


def pytest_collection_modifyitems(config, items):
    """Drops tf.test.TestCase's `test_session`: a helper the TFDS harness uses, not a test (pytest lists it as skipped)."""
    items[:] = [item for item in items if item.name != "test_session"]

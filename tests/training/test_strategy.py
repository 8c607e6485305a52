"""Strategies and mixed precision from config names; which process of a cluster writes the run.

A real multi-worker run is tests/e2e/test_multi_worker.py's; here a real
``SimpleClusterResolver`` stands for the resolver such a strategy carries.
"""

import json
from types import SimpleNamespace

import keras
import pytest
import tensorflow as tf

from sslrs_tf.errors import UserError
from sslrs_tf.training.strategy import jit_compile, make_strategy, set_precision, worker_role


def test_one_device_is_the_default_strategy_and_so_is_auto_without_two_gpus():
    default = tf.distribute.get_strategy()
    assert make_strategy("one_device") is default and default.num_replicas_in_sync == 1
    if len(tf.config.list_logical_devices("GPU")) < 2:
        assert make_strategy("auto") is default


def test_mirrored_without_gpus_spans_the_logical_cpus():
    # Only built, never run: a second strategy's collectives over the same devices would clash
    # with the session's (tests/conftest.py two_replicas); building one starts none.
    strategy = make_strategy("mirrored")
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert isinstance(strategy, tf.distribute.MirroredStrategy) and strategy.num_replicas_in_sync == len(cpus) == 2
    assert [tf.DeviceSpec.from_string(d).device_index for d in strategy.extended.worker_devices] == [0, 1]


def test_xla_is_on_for_gpus_and_tpus_off_for_cpus_and_deterministic_runs_unless_the_config_says(two_replicas):
    cpu = tf.distribute.get_strategy()
    assert jit_compile(None, cpu) is False and jit_compile(None, two_replicas) is False  # CPUs, logical or not
    gpus = tf.distribute.OneDeviceStrategy("/gpu:0")  # a strategy over a GPU, built, never run
    assert jit_compile(None, gpus) is True
    assert jit_compile(True, cpu) is True and jit_compile(False, gpus) is False
    # Keras compiles nothing with XLA under TF's op determinism: a deterministic run on GPUs goes without.
    assert jit_compile(None, gpus, deterministic=True) is False


def one_line_user_error(name):
    with pytest.raises(UserError) as err:
        make_strategy(name)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize("tf_config", [None, "{cluster: [", ""], ids=["unset", "not JSON", "empty"])
def test_multi_worker_without_tf_config_is_a_one_line_user_error(tf_config, monkeypatch):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert one_line_user_error("multi_worker") == (
        "train.distribution: multi_worker needs TF_CONFIG (JSON with cluster and task) in the environment")


def test_multi_worker_after_tensorflow_started_says_to_start_one_process_per_worker(monkeypatch):
    tf.config.list_logical_devices("CPU")  # TF's runtime has started (this test may run first in its process)
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["localhost:1"]},
                                                "task": {"type": "worker", "index": 0}}))
    message = one_line_user_error("multi_worker")
    assert message.startswith("train.distribution: multi_worker must start its process: run one train.py per worker")


def test_unknown_and_unavailable_strategies_are_one_line_user_errors():
    assert one_line_user_error("gpu") == "train.distribution: unknown strategy 'gpu'"
    assert one_line_user_error("tpu").startswith("train.distribution: tpu, but no TPU was found (")


def test_a_process_without_cluster_is_the_chief(two_replicas):
    assert worker_role(tf.distribute.get_strategy()) == (True, "chief")
    assert worker_role(two_replicas) == (True, "chief")


def resolver(cluster, task_type, task_id):
    """A strategy-like object carrying a real cluster resolver, as MultiWorkerMirroredStrategy does."""
    spec = tf.train.ClusterSpec(cluster)
    return SimpleNamespace(cluster_resolver=tf.distribute.cluster_resolver.SimpleClusterResolver(
        spec, task_type=task_type, task_id=task_id))


WORKERS = {"worker": ["localhost:1", "localhost:2"]}
WITH_CHIEF = {"chief": ["localhost:0"], "worker": ["localhost:1", "localhost:2"]}


@pytest.mark.parametrize("cluster, task_type, task_id, role", [
    (WORKERS, "worker", 0, (True, "worker_0")),  # no chief: worker 0 writes the run
    (WORKERS, "worker", 1, (False, "worker_1")),
    (WORKERS, "worker", None, (True, "worker_0")),  # a resolver without task index: task 0
    (WITH_CHIEF, "chief", 0, (True, "chief_0")),
    (WITH_CHIEF, "worker", 0, (False, "worker_0")),  # with a chief, worker 0 is one of the others
    (WITH_CHIEF, "worker", 1, (False, "worker_1")),
    (WORKERS, None, None, (True, "chief")),  # a resolver that names no task: one process
], ids=["worker0", "worker1", "no-index", "chief", "worker0-with-chief", "worker1-with-chief", "no-task"])
def test_the_chief_or_worker_0_of_a_cluster_without_chief_writes_the_run(cluster, task_type, task_id, role):
    assert worker_role(resolver(cluster, task_type, task_id)) == role


@pytest.fixture
def restore_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16"),
                                             ("float32", "float32")])
def test_set_precision_sets_the_policy_new_layers_compute_in(policy, compute, restore_policy):
    set_precision("mixed_float16" if policy == "float32" else "float32")  # from another policy
    set_precision(policy)
    assert keras.mixed_precision.global_policy().name == policy
    layer = keras.layers.Dense(2)
    y = layer(tf.ones((1, 3)))
    assert layer.compute_dtype == y.dtype == compute and layer.kernel.dtype == "float32"


def test_set_precision_refuses_an_unknown_policy(restore_policy):
    with pytest.raises(ValueError, match="mixed_float32"):
        set_precision("mixed_float32")
    assert keras.mixed_precision.global_policy().name == "float32"

"""Learning-rate schedules and optimizers from the config, against plain-Python references."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.config import OptimizerConfig
from sslrs_tf.training.optimizers import FusedAdam, FusedAdamW, FusedSGD, learning_rate, make_optimizer


def lr_at(schedule, step):
    return float(schedule(step)) if callable(schedule) else float(schedule)


def test_step_schedule_multiplies_at_each_decay_epoch():
    config = OptimizerConfig(lr=1e-3, schedule="step", decay_epochs=[100, 150], decay_factor=0.1)
    schedule = learning_rate(config, steps_per_epoch=10, epochs=200)
    for step, expected in [(0, 1e-3), (999, 1e-3), (1001, 1e-4), (1499, 1e-4), (1501, 1e-5), (1999, 1e-5)]:
        assert lr_at(schedule, step) == pytest.approx(expected, rel=1e-6), step
    # The encoders' optimizer follows the same steps from its own peak.
    encoder = learning_rate(config, 10, 200, peak=3e-6)
    assert lr_at(encoder, 1200) == pytest.approx(3e-7, rel=1e-6)


def test_cosine_with_warmup_advances_every_step():
    config = OptimizerConfig(lr=5e-4, schedule="cosine", warmup_epochs=2)
    schedule = learning_rate(config, steps_per_epoch=5, epochs=10)
    warmup, total = 10, 50
    for step in (0, 5, 10, 30, 49):
        if step < warmup:
            expected = 5e-4 * step / warmup
        else:
            expected = 5e-4 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))
        assert lr_at(schedule, step) == pytest.approx(expected, rel=1e-5, abs=1e-9), step


@pytest.mark.parametrize("name, coupled", [("adam", True), ("sgd", True), ("adamw", False)])
def test_weight_decay_is_coupled_l2_for_adam_and_sgd_and_decoupled_for_adamw(name, coupled):
    optimizer, l2 = make_optimizer(OptimizerConfig(name=name, lr=0.1, weight_decay=1e-3), 10, 2)
    assert l2 == (1e-3 if coupled else 0.0)
    assert np.isclose(optimizer.weight_decay or 0.0, 0.0 if coupled else 1e-3)


def numpy_steps(name, weights, grads, lr, momentum=0.9, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-7):
    """Plain NumPy Adam / AdamW (Keras' decoupled decay, applied first) / SGD with momentum."""
    w = [x.astype(np.float64) for x in weights]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, step_grads in enumerate(grads, start=1):
        for i, g in enumerate(step_grads):
            if name == "sgd":
                m[i] = momentum * m[i] - lr * g
                w[i] = w[i] + m[i]
                continue
            w[i] = w[i] - w[i] * weight_decay * lr
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            w[i] = w[i] - lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m[i] / (np.sqrt(v[i]) + eps)
    return w


FUSED = {"adam": lambda: FusedAdam(0.01), "adamw": lambda: FusedAdamW(0.01, weight_decay=0.1),
         "sgd": lambda: FusedSGD(0.01, momentum=0.9)}


@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_updates_follow_numpy_in_a_traced_step(name):
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(5,)).astype(np.float32)]
    grads = [[rng.normal(size=x.shape).astype(np.float32) for x in start] for _ in range(4)]
    variables = [keras.Variable(x) for x in start]
    optimizer = FUSED[name]()
    optimizer.build(variables)
    # Two updates in one traced function (as Keras' steps_per_execution unrolls them): each must
    # use its own step's bias corrections, not the first one's.
    @tf.function
    def two_steps(first, second):
        optimizer.apply(first, variables)
        optimizer.apply(second, variables)

    for a, b in zip(grads[::2], grads[1::2], strict=True):
        two_steps([tf.constant(x) for x in a], [tf.constant(x) for x in b])
    expected = numpy_steps(name, start, grads, 0.01, weight_decay=0.1 if name == "adamw" else 0.0)
    for got, want in zip(variables, expected, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    assert int(optimizer.iterations.numpy()) == 4
    # The class is Keras' own apart from the update: what the config asked for goes through.
    assert optimizer.get_config()["learning_rate"] == pytest.approx(0.01)


def test_fused_adam_updates_each_replicas_copy_with_the_summed_gradient(two_replicas):
    rng = np.random.default_rng(1)
    start = rng.normal(size=(4, 3)).astype(np.float32)
    per_replica = [[rng.normal(size=start.shape).astype(np.float32) for _ in range(2)] for _ in range(3)]
    with two_replicas.scope():
        variable = keras.Variable(start)
        optimizer = FusedAdam(0.01)
        optimizer.build([variable])

    @tf.function
    def step(grads):
        def replica_fn():
            ctx = tf.distribute.get_replica_context()
            g = tf.gather(grads, ctx.replica_id_in_sync_group)
            optimizer.apply([g], [variable])
        two_replicas.run(replica_fn)

    for grads in per_replica:
        step(tf.constant(np.stack(grads)))
    expected = numpy_steps("adam", [start], [[g[0] + g[1]] for g in per_replica], 0.01)[0]
    copies = two_replicas.experimental_local_results(variable.value)
    assert len(copies) == 2
    for copy in copies:
        np.testing.assert_allclose(copy.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_fused_adam_checkpoints_like_keras_adam(tmp_path):
    # Same state, same names, both ways: a run checkpointed with Keras' Adam (before the fused
    # update) resumes with FusedAdam, and every value a FusedAdam checkpoint holds is one of Keras' Adam.
    def stepped(optimizer, value):
        variables = [keras.Variable(np.full((2, 3), value, np.float32))]
        optimizer.apply([tf.constant(np.full((2, 3), value / 2, np.float32))], variables)
        return optimizer

    for source, target in ((keras.optimizers.Adam, FusedAdam), (FusedAdam, keras.optimizers.Adam)):
        saved, restored = stepped(source(0.01), 1.0), stepped(target(0.01), 3.0)
        path = tf.train.Checkpoint(optimizer=saved).save(str(tmp_path / source.__name__))
        tf.train.Checkpoint(optimizer=restored).restore(path).assert_consumed()
        for a, b in zip(saved.variables, restored.variables, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())

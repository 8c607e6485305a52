"""DualSimCLR's training step: learning, the non-finite guard, and equality across replicas."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from sslrs_tf.methods import DualSimCLR, get_method
from sslrs_tf.training.optimizers import FusedAdamW, FusedSGD
from tests.helpers import paired_batches as batches


def model(seed=0, lr=0.05, loss_scale=None):
    keras.utils.set_random_seed(seed)
    m = DualSimCLR("resnet10")
    optimizer = FusedSGD(lr, momentum=0.9)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=loss_scale)
    m.compile(optimizer=optimizer, jit_compile=False)
    return m


def test_registry_and_config_round_trip():
    assert get_method("dual_simclr") is DualSimCLR
    with pytest.raises(ValueError, match="unknown method 'mocov9'"):
        get_method("mocov9")
    m = DualSimCLR("resnet10", temperature=0.2)
    assert DualSimCLR.from_config(m.get_config()).temperature == 0.2


@pytest.fixture(scope="module")
def repeated():
    """A model after six steps on one repeated batch, the batch, and the six losses (one trace for two tests)."""
    m = model()
    (batch,) = batches(1)
    losses = [float(m.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(6)]
    return m, batch, losses


def test_loss_falls_on_a_repeated_batch(repeated):
    _, _, losses = repeated
    assert losses[-1] < losses[0] * 0.8, losses


def test_a_non_finite_batch_changes_nothing_and_is_counted(repeated):
    m, good, _ = repeated
    before = [v.numpy().copy() for v in m.variables] + [v.numpy().copy() for v in m.optimizer.variables]
    bad = {k: v.copy() for k, v in good.items()}
    bad["s1"][0, 0, 0, 0] = np.nan
    m.reset_metrics()
    logs = m.train_on_batch(bad, return_dict=True)
    after = [v.numpy() for v in m.variables] + [v.numpy() for v in m.optimizer.variables]
    assert logs["skipped_batches"] == 1.0
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(before, after, strict=True))
    m.train_on_batch(good)
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before, m.trainable_variables, strict=True))


def test_dual_swin_without_a_head_compares_the_pooled_vectors_and_learns():
    # One Swin training trace costs 15-25 s here, so this is the one test that pays it.
    keras.utils.set_random_seed(0)
    m = DualSimCLR("swin_micro", projection_dim=None, temperature=0.2, image_size=32)
    assert m.head_s1 is None and DualSimCLR.from_config(m.get_config()).image_size == 32
    (batch,) = batches(1)
    z = m(batch)
    assert z["s2"].shape == (8, 192)  # the pooled vector itself (8 x embed 24)
    np.testing.assert_allclose(z["s1"], m.encoder_s1(batch["s1"])["pooled"], rtol=1e-5, atol=1e-6)
    m.compile(optimizer=FusedAdamW(1e-3, weight_decay=0.0), jit_compile=False)  # as train.py makes adamw
    losses = [float(m.train_on_batch(batch, return_dict=True)["loss"]) for _ in range(6)]
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.fixture
def precision():
    """Sets a global dtype policy for one test and puts float32 back."""
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


def _delta(m, start):
    return np.concatenate([(v.numpy() - r).ravel() for v, r in zip(m.trainable_variables, start, strict=True)])


@pytest.fixture(scope="module")
def float32_steps():
    """Two float32 one-device steps: the batches, the initial variables, how far the weights moved, the model."""
    data = batches(2, batch=8, seed=2)
    one = model(seed=4, lr=1e-3)
    one(data[0])
    reference = [v.numpy() for v in one.variables]
    start = [v.numpy() for v in one.trainable_variables]
    for b in data:
        one.train_on_batch(b)
    return data, reference, start, _delta(one, start), one


def trained_copy(strategy, data, reference, **kwargs):
    """float32_steps' model made again under `strategy` (same initial variables), fitted on the same batches:
    (model, history)."""
    with strategy.scope():
        m = model(seed=4, lr=1e-3, **kwargs)
        m(data[0])
        for v, value in zip(m.variables, reference, strict=True):
            v.assign(value)
    ds = tf.data.Dataset.from_tensor_slices({k: np.concatenate([b[k] for b in data]) for k in data[0]}).batch(8)
    return m, m.fit(ds, epochs=1, verbose=0, shuffle=False).history


def test_two_replicas_train_like_one_device_on_the_same_global_batch(float32_steps, two_replicas):
    # A moderate learning rate: at lr 0.05 with momentum, float-order noise (1e-7 after one
    # step, measured) is amplified to 1e-3 within three steps, on one device as on two.
    data, reference, _, _, one = float32_steps
    # Through the loss-scale optimizer (a power of two scales and unscales exactly in float32):
    # its own merge call nested in train_step's cross-replica apply is the path mixed_float16
    # takes on several GPUs.
    two, logs = trained_copy(two_replicas, data, reference, loss_scale=256.0)
    assert float(two.optimizer.dynamic_scale.numpy()) == 256.0 and logs["skipped_batches"][0] == 0
    moved = max(float(np.max(np.abs(v.numpy() - r))) for v, r in zip(one.variables, reference, strict=True))
    assert moved > 1e-4  # the steps really changed the weights
    for a, b in zip(one.trainable_variables, two.trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-6, err_msg=a.path)
    moving = [v for v in one.non_trainable_variables if "moving" in v.path]
    assert moving
    for a, b in zip(one.non_trainable_variables, two.non_trainable_variables, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)


# Each policy on one device, against the float32 step (which two replicas match: the test above).
# mixed_float16 on two replicas: tests/methods/test_classifier.py, with two loss-scaled optimizers.
@pytest.mark.parametrize("policy, replicas", [("mixed_float16", 1), ("mixed_bfloat16", 1)])
def test_mixed_precision_steps_follow_float32(policy, replicas, precision, float32_steps, request):
    data, reference, start, expected, _ = float32_steps
    precision(policy)
    strategy = request.getfixturevalue("two_replicas") if replicas == 2 else tf.distribute.get_strategy()
    # An initial scale small enough that no step overflows here: the test is about the
    # step scaling and unscaling right, not about the loss-scale schedule skipping steps.
    mixed, logs = trained_copy(strategy, data, reference, loss_scale=256.0 if policy == "mixed_float16" else None)
    assert mixed.distribute_strategy.num_replicas_in_sync == replicas

    assert all(v.dtype == "float32" for v in mixed.trainable_variables)
    conv = next(layer for layer in mixed.encoder_s2._flatten_layers() if isinstance(layer, keras.layers.Conv2D))
    assert conv.compute_dtype == policy.split("_")[1]
    if policy == "mixed_float16":
        assert float(mixed.optimizer.dynamic_scale.numpy()) == 256.0  # no step was skipped for overflow
    assert np.isfinite(logs["loss"][0]) and logs["skipped_batches"][0] == 0
    # The low-precision step moves the weights the way the float32 step does.
    got = _delta(mixed, start)
    cosine = got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected))
    # bfloat16 keeps 8 mantissa bits against float16's 11: its steps follow less closely.
    assert cosine > (0.98 if policy == "mixed_float16" else 0.9), cosine
    np.testing.assert_allclose(np.linalg.norm(got), np.linalg.norm(expected), rtol=0.05 if policy == "mixed_float16" else 0.15)

"""MoCo-v2: momentum, queue, the skipped batch, two replicas; fixed and trainable adapters; the scenarios of the
SEN12MS MoCo work (one sensor, sensor pairs with and without augmentation, all and partial fusion)."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.losses.contrastive import moco_info_nce
from sslrs_tf.methods import MoCo, get_method
from sslrs_tf.methods.moco import MODES, partial_fusion, partial_fusion_masks
from sslrs_tf.training.optimizers import FusedSGD
from tests.helpers import paired_batches


def sensor_batches(n, batch=8, seed=0):
    """S1 (2 bands) and S2 (10 bands) batches sharing structure."""
    return [{"s1": b["s1"], "s2": b["s2"][..., :10]} for b in paired_batches(n, batch=batch, seed=seed)]


def model(mode="sensor", lr=0.05, queue=32, momentum=0.9, adapters=True, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    m = MoCo("resnet10", mode=mode, queue_size=queue, momentum=momentum, adapters=adapters, **kwargs)
    m.compile(optimizer=FusedSGD(lr, momentum=0.9), jit_compile=False)
    return m


def values(variables):
    return [np.array(v.numpy()) for v in variables]


def test_registered_once_per_scenario_and_round_trips_its_config():
    assert all(get_method(f"moco_{mode}") is MoCo for mode in MODES)
    m = MoCo("resnet10", mode="single", sensor="s1", queue_size=16, adapters=False, augmentation="set2")
    again = MoCo.from_config(m.get_config())
    assert (again.mode, again.sensor, again.queue_size, again.adapters, again.augmentation) == \
        ("single", "s1", 16, False, "set2")
    assert again.encoder_q.input.shape[-1] == 2 and list(again.encoders()) == ["s1"]
    with pytest.raises(ValueError, match="Received: mode='both'"):
        MoCo("resnet10", mode="both")
    with pytest.raises(ValueError, match="needs an `augmentation`. Received: augmentation='none'"):
        MoCo("resnet10", mode="fusion", augmentation="none")


@pytest.fixture(scope="module")
def trained():
    """A sensor-mode model with trainable adapters before and after steps on four batches (one trace for
    several tests)."""
    m = model(adapter_trainable=True)
    data = sensor_batches(4)
    m(data[0])
    start = {"queue": m.queue.numpy().copy(), "pairs": [(k.numpy().copy(), q.numpy().copy())
                                                      for k, q in m.momentum_pairs]}
    logs = [m.train_on_batch(b, return_dict=True) for b in data]
    return m, data, start, logs


def test_key_encoder_follows_by_momentum_and_keys_enter_the_queue(trained):
    m, data, start, logs = trained
    assert all(np.isfinite(log["loss"]) for log in logs)
    # The key encoder and neck started as copies of the query's and are never trained by gradient.
    assert all(np.array_equal(k, q) for k, q in start["pairs"])
    trainable = {id(v) for _, group in m.optimizer_groups() for v in group}
    assert not any(id(k) in trainable for k, _ in m.momentum_pairs)
    # A trainable S1 adapter has no S2 counterpart: it learns by gradient through the keys instead.
    assert m.key_trained and all(id(v) in trainable for v in m.key_trained)
    adapter = m.encoder_k.get_layer("encoder_k_adapter")
    assert [id(v) for v in m.key_trained] == [id(v) for v in adapter.trainable_weights]
    # Four steps of 8 keys: the queue's first 32 rows are the keys, unit-norm, and the pointer wrapped.
    assert int(m.queue_ptr.numpy()) == 0
    np.testing.assert_allclose(np.linalg.norm(m.queue.numpy(), axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(m.queue.numpy(), start["queue"])
    # One more step by hand: each key weight moves to m * k + (1 - m) * q with q after the update.
    before = [(k.numpy().copy(), q) for k, q in m.momentum_pairs]
    queue = m.queue.numpy().copy()
    m.train_on_batch(data[0])
    for (k_old, q), (k, _) in zip(before, m.momentum_pairs):
        np.testing.assert_allclose(k.numpy(), 0.9 * k_old + 0.1 * q.numpy(), rtol=1e-5, atol=1e-6)
    # The new keys replaced the oldest eight rows, the others stayed.
    np.testing.assert_array_equal(m.queue.numpy()[8:], queue[8:])
    assert int(m.queue_ptr.numpy()) == 8


def test_a_non_finite_batch_touches_neither_queue_nor_key_encoder(trained):
    m, data, _, _ = trained
    bad = {k: v.copy() for k, v in data[1].items()}
    bad["s2"][0, 0, 0, 0] = np.nan
    state = [m.queue, m.queue_ptr, *(k for k, _ in m.momentum_pairs)]
    before = values(state)
    m.reset_metrics()
    assert m.train_on_batch(bad, return_dict=True)["skipped_batches"] == 1.0
    assert all(np.array_equal(a, b) for a, b in zip(before, values(state), strict=True))


def test_queries_and_their_keys_align_against_a_fixed_queue():
    # The training loss itself rises while real keys replace the random initial queue (they are
    # harder negatives), so learning is measured against one fixed queue before and after.
    m = model(lr=0.05, queue=64, momentum=0.5, seed=1)
    data = sensor_batches(2, seed=3)
    queue = m.queue.numpy().copy()

    def fixed_queue_loss():
        z = m(data[0])
        return float(moco_info_nce(z["query"], z["key"], queue, m.temperature))

    before = fixed_queue_loss()
    for i in range(8):
        m.train_on_batch(data[i % 2])
    assert fixed_queue_loss() < 0.8 * before


def test_two_replicas_keep_identical_queues_and_key_encoders(two_replicas):
    data = sensor_batches(2, batch=8, seed=4)
    strategy = two_replicas
    with strategy.scope():
        two = model(queue=32)
        two(data[0])
    start = two.queue.numpy().copy()
    ds = tf.data.Dataset.from_tensor_slices({k: np.concatenate([b[k] for b in data]) for k in data[0]}).batch(8)
    two.fit(ds, epochs=1, verbose=0, shuffle=False)

    for variable in (two.queue, two.queue_ptr, *(k for k, _ in two.momentum_pairs)):
        copies = [c.numpy() for c in strategy.experimental_local_results(variable.value)]
        assert len(copies) == 2 and np.array_equal(copies[0], copies[1]), variable.path
    # Each step enqueued the keys of both replicas (the global batch of 8): 16 rows written, unit norm.
    assert int(two.queue_ptr.numpy()) == 16
    queue = two.queue.numpy()
    assert not np.isclose(queue[:16], start[:16]).all(axis=1).any() and np.array_equal(queue[16:], start[16:])
    np.testing.assert_allclose(np.linalg.norm(queue[:16], axis=1), 1.0, rtol=1e-5)


def test_fixed_adapters_do_not_change_in_a_training_step_and_trainable_ones_do():
    batch = sensor_batches(1)[0]
    for trainable in (False, True):
        m = model(adapter_trainable=trainable, queue=16)
        adapters = [m.encoder_q.get_layer("encoder_q_adapter"), m.encoder_k.get_layer("encoder_k_adapter")]
        kernels = [a.get_layer("conv").kernel for a in adapters]
        before = values(kernels)
        backbone = values(m.encoder_q.get_layer("encoder_q_backbone").trainable_weights[:1])
        m.train_on_batch(batch)
        changed = [not np.array_equal(a, b) for a, b in zip(before, values(kernels))]
        assert changed == [trainable, trainable]
        assert not np.array_equal(backbone[0], m.encoder_q.get_layer("encoder_q_backbone").trainable_weights[0])
        # Fixed: the S1 adapter learns nothing, so nothing on the key side is trained by gradient.
        assert bool(m.key_trained) == trainable


def test_fusion_trains_on_two_augmented_views_of_the_stacked_image_and_shares_its_fixed_adapter():
    m = model(mode="fusion", queue=16)
    batch = sensor_batches(1)[0]
    assert m.encoder_q.input.shape[-1] == 12 and not m.key_trained  # every key weight follows by momentum
    for k, q in zip(m.encoder_k.get_layer("encoder_k_adapter").weights,
                    m.encoder_q.get_layer("encoder_q_adapter").weights, strict=True):
        np.testing.assert_array_equal(k.numpy(), q.numpy())
    logs = [m.train_on_batch(batch, return_dict=True) for _ in range(3)]
    assert all(np.isfinite(log["loss"]) for log in logs) and int(m.queue_ptr.numpy()) == 8
    q, k = m._views(batch, training=True)  # noqa: SLF001
    assert q.shape == (8, 32, 32, 12) and not np.allclose(q, k)
    assert m.view_augmentation == "set3"


def test_partial_fusion_mixes_s1_s2_and_stacked_images_in_equal_thirds():
    kinds = partial_fusion_masks(tf.constant([1, 2], tf.int64), 12).numpy()
    assert sorted(kinds.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert kinds.tolist() != partial_fusion_masks(tf.constant([1, 3], tf.int64), 12).numpy().tolist()
    # A batch of 7 has one extra image; which kind gets it depends on the seed, so none is favoured.
    extra = [np.bincount(partial_fusion_masks(tf.constant([s, 0], tf.int64), 7).numpy(), minlength=3).argmax()
             for s in range(30)]
    assert set(extra) == {0, 1, 2}
    batch = sensor_batches(1, batch=6)[0]
    kinds = np.array([0, 1, 2, 2, 1, 0])
    stacked = np.concatenate([batch["s1"], batch["s2"]], axis=-1)
    fused = partial_fusion(tf.constant(stacked), tf.constant(kinds), 2).numpy()
    expected = stacked * np.array([[1] * 2 + [0] * 10, [0] * 2 + [1] * 10, [1] * 12])[kinds][:, None, None, :]
    np.testing.assert_array_equal(fused, expected)
    # In the training step: every image is one of the three kinds, and all three are there; with set3's jitter
    # and greyscale too, the missing sensor's bands stay exactly zero.
    m = model(mode="partial_fusion", queue=16, augmentation="set3")
    m.train_on_batch(batch)
    m.optimizer.iterations.assign(5)
    q, k = m._views(batch, training=True)  # noqa: SLF001
    zero_s1 = np.all(q.numpy()[..., :2] == 0, axis=(1, 2, 3))
    zero_s2 = np.all(q.numpy()[..., 2:] == 0, axis=(1, 2, 3))
    assert zero_s1.sum() == zero_s2.sum() == 2 and not (zero_s1 & zero_s2).any()
    assert np.array_equal(zero_s1, np.all(k.numpy()[..., :2] == 0, axis=(1, 2, 3)))  # one image, two views


@pytest.mark.parametrize("mode, augmentation", [("single", None), ("sensor", "set2")])
def test_one_sensor_and_augmented_sensor_pairs_train(mode, augmentation):
    m = model(mode=mode, queue=32, augmentation=augmentation, sensor="s1")
    batch = sensor_batches(1)[0]
    q, k = m._views(batch, training=True)  # noqa: SLF001
    if mode == "single":  # two views of the S1 patch (flips, blur, elastic)
        assert q.shape == k.shape == batch["s1"].shape and not np.allclose(q, k)
    else:  # each sensor augmented on its own, neither left as it was
        assert q.shape == batch["s2"].shape and k.shape == batch["s1"].shape
        assert not np.allclose(q, batch["s2"]) and not np.allclose(k, batch["s1"])
    logs = [m.train_on_batch(batch, return_dict=True) for _ in range(2)]
    assert all(np.isfinite(log["loss"]) for log in logs) and int(m.queue_ptr.numpy()) == 16

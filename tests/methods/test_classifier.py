"""The downstream classifier: its input variants, frozen encoders, the encoders' own learning rate."""

import keras
import numpy as np
import pytest

from sslrs_tf.methods import Classifier, get_method
from sslrs_tf.training.optimizers import FusedAdam


def labelled(batch=8, size=32, seed=0, multi=False):
    rng = np.random.default_rng(seed)
    x = {"s1": rng.normal(size=(batch, size, size, 2)).astype(np.float32),
         "s2": rng.normal(size=(batch, size, size, 13)).astype(np.float32)}
    y = (rng.random((batch, 8)) < 0.3).astype(np.float32) if multi else rng.integers(0, 8, size=batch)
    return x, y


def sgd(lr):
    return keras.optimizers.SGD(lr)


@pytest.mark.parametrize("inputs, channels", [("only_s1", {"s1": 2}), ("only_s2", {"s2": 13}),
                                              ("early_fusion", {"s1s2": 15}), ("late_fusion", {"s1": 2, "s2": 13})])
def test_each_input_variant_builds_its_encoders(inputs, channels):
    model = Classifier("resnet10", inputs=inputs)
    x, _ = labelled(batch=2)
    assert model(x).shape == (2, 8)
    assert {name: e.input_shape[-1] for name, e in model.encoders().items()} == channels
    assert model.head.kernel.shape[0] == 512 * len(channels)


def test_mma_vgg_and_moco_adapter_encoders_go_downstream_with_their_pretrained_weights():
    from sslrs_tf.methods import MMA, MoCo

    x, _ = labelled(batch=2)
    mma = MMA(embedding_dim=16)
    mma(x)
    probe = Classifier("vgg", inputs="late_fusion", embedding_dim=16, freeze=True)
    probe.load_encoders(mma.encoders())
    assert probe.head.kernel.shape[0] == 2 * 16  # MMA's pooled maps, concatenated
    for name in ("s1", "s2"):
        np.testing.assert_allclose(probe.encoders()[name](x[name])["pooled"], mma.encoders()[name](x[name])["pooled"],
                                   rtol=1e-5, atol=1e-6)

    x10 = {"s1": x["s1"], "s2": x["s2"][..., :10]}
    moco = MoCo("resnet10", mode="sensor", s2_channels=10, adapters=True, queue_size=8)
    moco(x10)
    tuned = Classifier("resnet10", inputs="late_fusion", s2_channels=10, adapters=True)
    tuned.load_encoders(moco.encoders())  # S2: the query encoder, S1: the key encoder, each with its adapter
    for name in ("s1", "s2"):
        np.testing.assert_allclose(tuned.encoders()[name](x10[name])["pooled"],
                                   moco.encoders()[name](x10[name])["pooled"], rtol=1e-5, atol=1e-6)
    assert tuned(x10).shape == (2, 8)
    with pytest.raises(ValueError, match="the s1 encoder does not fit backbone resnet10"):
        Classifier("resnet10", inputs="late_fusion", s2_channels=10).load_encoders(moco.encoders())  # no adapters

    fusion = MoCo("resnet10", mode="fusion", s2_channels=10, adapters=True, queue_size=8)
    fusion(x10)
    early = Classifier("resnet10", inputs="early_fusion", s2_channels=10, adapters=True)
    early.load_encoders(fusion.encoders())  # the stacked S1+S2 encoder starts early fusion
    stacked = np.concatenate([x10["s1"], x10["s2"]], -1)
    np.testing.assert_allclose(early.encoders()["s1s2"](stacked)["pooled"],
                               fusion.encoders()["s1s2"](stacked)["pooled"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="no s1 encoder to start inputs=late_fusion from"):
        tuned.load_encoders(fusion.encoders())


def test_the_moco_works_downstream_variants_take_what_they_say_from_its_encoder():
    from sslrs_tf.methods import MoCo
    from sslrs_tf.models.encoders import encoder_parts

    x, _ = labelled(batch=2)
    x10 = {"s1": x["s1"], "s2": x["s2"][..., :10]}
    keras.utils.set_random_seed(1)
    moco = MoCo("resnet10", mode="sensor", s2_channels=10, adapters=True, queue_size=8)
    moco(x10)
    adapter, backbone = encoder_parts(moco.encoders()["s2"])
    # Moco_1x1Rnd: the backbone from MoCo, the adapter at its own random start.
    rnd = Classifier("resnet10", inputs="only_s2", s2_channels=10, adapters=True, pretrained_adapters="random")
    before = [w.copy() for w in encoder_parts(rnd.encoders()["s2"])[0].get_weights()]
    rnd.load_encoders(moco.encoders())
    rnd_adapter, rnd_backbone = encoder_parts(rnd.encoders()["s2"])
    assert all(np.array_equal(a, b) for a, b in zip(rnd_backbone.get_weights(), backbone.get_weights(), strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(rnd_adapter.get_weights(), before, strict=True))
    assert not np.array_equal(rnd_adapter.get_weights()[0], adapter.get_weights()[0])
    # Moco: no adapter, the 10 bands into the backbone; every weight from MoCo's but the first convolution's.
    drop = Classifier("resnet10", inputs="only_s2", s2_channels=10, pretrained_adapters="drop")
    drop.load_encoders(moco.encoders())
    mine, theirs = drop.encoders()["s2"].get_weights(), backbone.get_weights()
    assert mine[0].shape == (7, 7, 10, 64) and theirs[0].shape == (7, 7, 3, 64)
    assert all(np.array_equal(a, b) for a, b in zip(mine[1:], theirs[1:], strict=True))
    assert drop(x10).shape == (2, 8)
    plain = MoCo("resnet10", mode="sensor", s2_channels=10, adapters=False, queue_size=8)
    with pytest.raises(ValueError, match="needs a pre-trained encoder with a 1x1 adapter"):
        drop.load_encoders(plain.encoders())


def test_a_fusion_encoder_reads_one_sensor_with_the_other_s_bands_zero():
    from sslrs_tf.methods import MoCo

    x, _ = labelled(batch=2)
    keras.utils.set_random_seed(2)
    fusion = MoCo("resnet10", mode="partial_fusion", s2_channels=10, adapters=True, queue_size=8)
    fusion({"s1": x["s1"], "s2": x["s2"][..., :10]})
    for inputs, sensor, stacked in (("fusion_only_s1", "s1", np.concatenate([x["s1"], np.zeros((2, 32, 32, 10))], -1)),
                                    ("fusion_only_s2", "s2", np.concatenate([np.zeros((2, 32, 32, 2)),
                                                                             x["s2"][..., :10]], -1))):
        model = Classifier("resnet10", inputs=inputs, s2_channels=10, adapters=True)
        model.load_encoders(fusion.encoders())
        one = {sensor: x[sensor][..., :10] if sensor == "s2" else x[sensor]}  # only that sensor is read
        np.testing.assert_allclose(model.encoders()["s1s2"](model.stream_input(one, "s1s2"))["pooled"],
                                   fusion.encoders()["s1s2"](stacked.astype(np.float32))["pooled"], rtol=1e-5,
                                   atol=1e-6)
        assert model(one).shape == (2, 8) and model.encoders()["s1s2"].input_shape[-1] == 12
    assert Classifier.input_modalities(type("M", (), {"inputs": "fusion_only_s2"})) == ("s2",)


def test_freezing_the_first_stages_keeps_them_and_the_adapter_and_trains_the_rest():
    x, y = labelled(batch=4)
    x10 = {"s1": x["s1"], "s2": x["s2"][..., :10]}
    model = Classifier("resnet10", inputs="only_s2", s2_channels=10, adapters=True, freeze_stages=2)
    model.compile(optimizer=sgd(0.1))
    model(x10)
    layers = {v.path: v for v in model.encoders()["s2"].weights}
    before = {k: v.numpy().copy() for k, v in layers.items()}
    model.train_on_batch(x10, y)
    changed = {k for k, v in layers.items() if not np.array_equal(before[k], v.numpy())}
    fixed = [k for k in layers if "adapter" in k or "conv1_" in k or "stack0_" in k]
    assert fixed and not changed & set(fixed)  # weights and BatchNorm statistics alike
    assert any("stack1_" in k for k in changed) and any("stack3_" in k for k in changed)


def test_registry_config_and_argument_errors():
    assert get_method("classifier") is Classifier
    config = Classifier("resnet10", inputs="only_s2", label="multi", freeze=True).get_config()
    assert Classifier.from_config(config).get_config() == config
    with pytest.raises(ValueError, match="Received: inputs='both'"):
        Classifier("resnet10", inputs="both")
    with pytest.raises(ValueError, match="Received: label='segmentation'"):
        Classifier("resnet10", label="segmentation")
    with pytest.raises(ValueError, match="Received: backbone='unet'"):
        Classifier("unet")


@pytest.mark.parametrize("label", ["single", "multi"])
def test_loss_falls_on_a_repeated_batch(label):
    keras.utils.set_random_seed(0)
    model = Classifier("resnet10", inputs="only_s2", label=label)
    model.compile(optimizer=FusedAdam(1e-3))
    x, y = labelled(batch=4, size=16, multi=label == "multi")
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(5)]
    assert losses[-1] < 0.7 * losses[0], losses
    logs = model.train_on_batch(x, y, return_dict=True)
    assert set(logs) >= ({"OA", "AA"} if label == "single" else {"F1", "O-F1"})


def test_frozen_encoders_keep_weights_and_statistics_only_the_head_learns():
    keras.utils.set_random_seed(1)
    model = Classifier("resnet10", freeze=True)
    model.compile(optimizer=FusedAdam(1e-2))
    x, y = labelled()
    model(x)
    encoders = [v.numpy().copy() for e in model.encoders().values() for v in e.variables]
    head = model.head.kernel.numpy().copy()
    for _ in range(2):
        model.train_on_batch(x, y)
    after = [v.numpy() for e in model.encoders().values() for v in e.variables]
    assert any("moving" in v.path for e in model.encoders().values() for v in e.variables)
    assert all(np.array_equal(a, b) for a, b in zip(encoders, after, strict=True))
    assert not np.allclose(head, model.head.kernel.numpy())


def test_encoders_train_at_their_own_learning_rate():
    x, y = labelled(seed=2)

    def one_step(head_lr, encoder_lr=None):
        keras.utils.set_random_seed(3)
        model = Classifier("resnet10", inputs="only_s2")
        model.compile(optimizer=sgd(head_lr))
        if encoder_lr is not None:
            model.encoder_optimizer = sgd(encoder_lr)
        model(x)
        start = [v.numpy() for v in model.trainable_variables]
        model.train_on_batch(x, y)
        return model, [v.numpy() - s for v, s in zip(model.trainable_variables, start, strict=True)]

    model, split = one_step(0.1, 0.01)
    _, single = one_step(0.01)
    encoder = {id(v) for v in model.encoder_variables()}
    assert len(encoder) == len(model.trainable_variables) - 2  # all but the head's kernel and bias
    for v, a, b in zip(model.trainable_variables, split, single, strict=True):
        # Plain SGD: a step is lr x gradient, and the first step's gradients are the same.
        np.testing.assert_allclose(a, b * (1.0 if id(v) in encoder else 10.0), rtol=1e-4, atol=1e-7, err_msg=v.path)


def test_mixed_float16_with_an_encoder_learning_rate_follows_float32_on_two_replicas(two_replicas):
    # The papers' GPU setting: float16 fine-tuning, the encoders at their own learning rate.
    import tensorflow as tf

    x, y = labelled(seed=4)

    def trained(strategy, policy, start=None):
        keras.mixed_precision.set_global_policy(policy)
        try:
            with strategy.scope():
                keras.utils.set_random_seed(3)
                model = Classifier("resnet10", inputs="only_s2")
                model.encoder_optimizer = sgd(0.01)  # before compile, as train.py sets it
                model.compile(optimizer=sgd(0.1))
                model(x)
                if start is not None:
                    for v, value in zip(model.variables, start, strict=True):
                        v.assign(value)
            initial = [v.numpy() for v in model.variables]
            model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(2), epochs=1, verbose=0)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        return model, initial

    reference, start = trained(tf.distribute.get_strategy(), "float32")
    mixed, _ = trained(two_replicas, "mixed_float16", start)
    scaled = (mixed.optimizer, mixed.encoder_optimizer)
    assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in scaled)
    assert float(scaled[0].dynamic_scale.numpy()) == float(scaled[1].dynamic_scale.numpy()) == 2.0 ** 15
    assert int(scaled[1].iterations.numpy()) == 2  # the encoders' optimizer took both steps
    trainable = {id(v) for v in reference.trainable_variables}
    moved = {name: [] for name in ("encoders", "head")}
    for (v, a, s), b in zip(((v, v.numpy(), s) for v, s in zip(reference.variables, start, strict=True)),
                            (m.numpy() for m in mixed.variables), strict=True):
        if id(v) in trainable:
            group = "encoders" if any(v is e for e in reference.encoder_variables()) else "head"
            moved[group].append((a - s, b - s))
    for group, pairs in moved.items():  # each group moved as float32 moved it, at its own rate
        want = np.concatenate([p[0].ravel() for p in pairs])
        got = np.concatenate([p[1].ravel() for p in pairs])
        assert want @ got / (np.linalg.norm(want) * np.linalg.norm(got)) > 0.98, group
        np.testing.assert_allclose(np.linalg.norm(got), np.linalg.norm(want), rtol=0.05, err_msg=group)


def test_under_loss_scaling_an_overflow_on_one_replica_skips_every_optimizers_step(two_replicas):
    import tensorflow as tf

    from sslrs_tf.methods.base import Method

    groups = [(None, [0, 1]), (None, [2])]

    def step(replica_value):
        ctx = tf.distribute.get_replica_context()
        # Replica 1's encoder gradient overflowed; every other gradient is finite.
        bad = tf.cast(ctx.replica_id_in_sync_group, "float32") * replica_value
        grads = [tf.ones([2]), tf.ones([3]), tf.ones([2]) + bad]
        return Method._skip_together(ctx, grads, groups)

    for value, finite in ((0.0, True), (float("inf"), False)):
        out = two_replicas.run(step, args=(tf.constant(value),))
        for replica in range(2):
            g = [two_replicas.experimental_local_results(t)[replica].numpy() for t in out]
            # Both groups' first gradients are poisoned on both replicas (or all left as they were).
            assert np.isfinite(g[0]).all() == finite and np.isfinite(g[2]).all() == finite
            np.testing.assert_array_equal(g[1], np.ones(3))

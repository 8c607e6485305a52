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

"""The SimCLR projection head, against a NumPy MLP computed from the layer's own weights."""

import keras
import numpy as np
import pytest

from sslrs_tf.models.heads import projection_head


def numpy_head(x, head):
    """relu(x @ W0 + b0) @ W2 + b2 in float64, from the head's fc0 and fc2 weights."""
    w0, b0 = (np.asarray(w, np.float64) for w in head.get_layer("fc0").get_weights())
    w2, b2 = (np.asarray(w, np.float64) for w in head.get_layer("fc2").get_weights())
    return np.maximum(x.astype(np.float64) @ w0 + b0, 0.0) @ w2 + b2


def test_projection_is_relu_mlp_of_its_two_dense_layers():
    keras.utils.set_random_seed(0)
    head = projection_head(16, hidden_dim=12, out_dim=5)
    rng = np.random.default_rng(0)
    # Non-zero biases, so that a missing bias or a ReLU in the wrong place shows.
    for layer in ("fc0", "fc2"):
        kernel, bias = head.get_layer(layer).get_weights()
        head.get_layer(layer).set_weights([kernel, rng.normal(size=bias.shape).astype(np.float32)])
    x = rng.normal(size=(7, 16)).astype(np.float32)
    got = np.asarray(head(x))
    want = numpy_head(x, head)
    assert got.shape == (7, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # The ReLU cut something here: without it the output would differ.
    w0, b0 = head.get_layer("fc0").get_weights()
    w2, b2 = head.get_layer("fc2").get_weights()
    assert (x @ w0 + b0 < 0).any() and not np.allclose(got, (x @ w0 + b0) @ w2 + b2, atol=1e-3)


@pytest.mark.parametrize("hidden, widths", [(None, (32, 32, 128)), (8, (32, 8, 128))])
def test_hidden_width_defaults_to_the_input_width_and_output_to_128(hidden, widths):
    head = projection_head(32, hidden_dim=hidden)
    assert [head.get_layer(n).kernel.shape for n in ("fc0", "fc2")] == [widths[:2], widths[1:]]
    assert head.input_shape == (None, 32) and head(np.zeros((2, 32), np.float32)).shape == (2, 128)


def test_the_heads_name_is_the_models_and_refuses_another_input_width():
    head = projection_head(8, out_dim=4, name="head_s1")
    assert head.name == "head_s1"
    with pytest.raises(ValueError, match="expected shape=.*8"):
        head(np.zeros((2, 9), np.float32))

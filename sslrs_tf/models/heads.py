"""Heads on top of encoders."""

import keras


def projection_head(in_dim, hidden_dim=None, out_dim=128, name="projection"):
    """The MLP projection head of SimCLR: ``in_dim -> hidden_dim -> out_dim`` with ReLU between.

    Args:
        in_dim: width of the encoder's pooled vector.
        hidden_dim: hidden width (default `in_dim`, as in the papers: d -> d -> 128).
        out_dim: projection width.
    """
    hidden_dim = hidden_dim or in_dim
    inputs = keras.Input((in_dim,))
    x = keras.layers.Dense(hidden_dim, name="fc0")(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.Dense(out_dim, name="fc2")(x)
    return keras.Model(inputs, x, name=name)

"""Learning-rate schedules and optimizers from the config, against plain-Python references."""

import math

import numpy as np
import pytest

from sslrs_tf.config import OptimizerConfig
from sslrs_tf.training.optimizers import learning_rate, make_optimizer


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

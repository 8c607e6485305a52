"""The segmentation models: shapes, the ignored label, fusion of two encoders, the UNet baseline."""

import keras
import numpy as np
import pytest

from sslrs_tf.methods import Segmenter, get_method
from sslrs_tf.models.unet import unet
from sslrs_tf.training.optimizers import FusedAdam


def labelled(batch=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = {"s1": rng.normal(size=(batch, size, size, 2)).astype(np.float32),
         "s2": rng.normal(size=(batch, size, size, 13)).astype(np.float32)}
    # Class from the sign of an S2 channel, so there is something to learn; a block unlabelled.
    y = np.where(x["s2"][..., 0] > 0, 2, 6).astype(np.uint8)
    y[:, :8, :8] = 255
    return x, y


@pytest.mark.parametrize("backbone, inputs", [("resnet10", "late_fusion"), ("resnet10", "only_s1"),
                                              ("unet", "early_fusion"), ("swin_micro", "early_fusion"),
                                              ("vgg", "late_fusion")])
def test_logits_at_input_resolution(backbone, inputs):
    model = Segmenter(backbone, inputs=inputs, image_size=32)
    x, _ = labelled(batch=2)
    assert model(x).shape == (2, 32, 32, 8)
    assert len(model.encoders()) == {"late_fusion": 2, "only_s1": 1, "early_fusion": 0 if backbone == "unet" else 1}[inputs]


def test_unet_baseline_layout_and_argument_errors():
    net = unet(15, 8)
    widths = [layer.filters for layer in net.layers if isinstance(layer, keras.layers.Conv2D) and
              layer.name.startswith("down") and layer.name.endswith("conv2")]
    assert widths == [64, 128, 256, 512, 512]
    assert get_method("segmenter") is Segmenter
    with pytest.raises(ValueError, match="Received: inputs='late_fusion'"):
        Segmenter("unet", inputs="late_fusion")
    with pytest.raises(ValueError, match="Received: label='single'"):
        Segmenter("resnet10", label="single")


def test_ignored_pixels_carry_no_loss_and_the_loss_falls():
    keras.utils.set_random_seed(0)
    model = Segmenter("resnet10", inputs="only_s2")
    model.compile(optimizer=FusedAdam(1e-3))
    x, y = labelled(batch=2)
    logits = np.asarray(model(x))
    valid = y != 255
    z = logits - logits.max(-1, keepdims=True)
    nll = -(np.take_along_axis(z, np.minimum(y, 7)[..., None].astype(int), -1)[..., 0] - np.log(np.exp(z).sum(-1)))
    expected = nll[valid].mean()  # NumPy reference: mean over labelled pixels only
    assert float(model.loss_fn(y, logits)) == pytest.approx(expected, rel=1e-4)
    losses = [model.train_on_batch(x, y, return_dict=True)["loss"] for _ in range(6)]
    assert losses[-1] < 0.7 * losses[0], losses
    logs = model.train_on_batch(x, y, return_dict=True)
    assert {"OA", "AA", "mIoU"} <= set(logs)

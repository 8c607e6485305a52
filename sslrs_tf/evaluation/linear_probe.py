"""A linear probe of frozen encoders: pooled S1 and S2 features concatenated, one linear layer to the classes."""

import keras
import numpy as np
import tensorflow as tf

from sslrs_tf.metrics import confusion_scores
from sslrs_tf.training.optimizers import FusedAdam


def extract_features(encoders, dataset):
    """Concatenated pooled features of every modality, and the labels, of a labelled dataset (NumPy)."""
    features, labels = [], []
    for inputs, y in dataset:
        pooled = [np.asarray(encoders[m](inputs[m], training=False)["pooled"]) for m in sorted(encoders)]
        features.append(np.concatenate(pooled, axis=1))
        labels.append(np.asarray(y))
    return np.concatenate(features), np.concatenate(labels)


def accuracy_report(y_true, y_pred, num_classes):
    """Overall accuracy, and average accuracy over the classes present in `y_true` (no phantom classes)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2)
    scores = confusion_scores(confusion.reshape(num_classes, num_classes).astype(np.float64))
    recall, present = np.asarray(scores["per_class_accuracy"]), np.asarray(scores["present"])
    per_class = {c: float(recall[c]) for c in range(num_classes) if present[c]}
    return {"OA": float(scores["OA"]), "AA": float(scores["AA"]), "per_class": per_class}


def linear_probe(train, test, num_classes, epochs=300, lr=1e-2, seed=0):
    """Fits softmax regression on standardised `train` features, reports accuracy on `test`.

    Args:
        train, test: ``(features, labels)`` from :func:`extract_features`.
    """
    (x, y), (xt, yt) = train, test
    mean, std = x.mean(0), x.std(0) + 1e-6
    keras.utils.set_random_seed(seed)
    probe = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(num_classes)])
    probe.compile(optimizer=FusedAdam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    # Full-batch steps as one Keras epoch of `epochs` steps: the same updates as `epochs`
    # Keras epochs, without Keras's per-epoch set-up (measured: most of the probe's time).
    steps = tf.data.Dataset.from_tensors(((x - mean) / std, y)).repeat(epochs)
    probe.fit(steps, epochs=1, verbose=0, shuffle=False)
    predicted = np.argmax(probe.predict((xt - mean) / std, verbose=0), axis=1)
    return accuracy_report(yt, predicted, num_classes)

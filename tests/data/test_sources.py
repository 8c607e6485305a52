"""The sources behind the input pipeline: what every reader shares (crops, label fractions), what a
Sentinel source reads, and which objects name a dataset."""

import numpy as np
import pytest
import tensorflow as tf

from sslrs_tf.data.pipeline import as_source
from sslrs_tf.data.sources import SentinelSource, checked_crop, kept_count, random_crop_offsets
from sslrs_tf.errors import UserError
from tests.helpers import eager_and_in_tf_data


def test_random_crops_depend_on_seed_epoch_and_batch_only_and_stay_inside_the_patch():
    crops = lambda seed, epoch, batch: random_crop_offsets(seed, epoch, batch, 500, 48, 32)  # noqa: E731
    eager, graph = eager_and_in_tf_data(lambda *a: tf.stack(crops(*a)), tf.constant(3, tf.int64),
                                        tf.constant(2, tf.int64), tf.constant(5, tf.int64))
    np.testing.assert_array_equal(eager, graph)
    assert eager.min() == 0 and eager.max() == 48 - 32  # every offset at which the crop fits, no other
    again = np.stack(crops(3, 2, 5))
    np.testing.assert_array_equal(eager, again)
    for other in [(4, 2, 5), (3, 3, 5), (3, 2, 6)]:
        assert not np.array_equal(eager, np.stack(crops(*other)))


def test_kept_counts_and_crops_that_do_not_fit():
    assert [kept_count(100, f) for f in (0.01, 0.1, 0.5, 1.0)] == [1, 10, 50, 100]
    assert kept_count(5, 0.01) == 1  # at least one sample
    assert checked_crop(None, 32) == 32 and checked_crop(24, 32) == 24
    with pytest.raises(UserError, match="crop_size 40 is larger than the dataset's 32 px patches"):
        checked_crop(40, 32)


def test_a_sentinel_source_counts_names_and_lists_its_samples(built):
    builder = built["dfc2020"]
    source = as_source(builder)
    assert isinstance(source, SentinelSource) and as_source(source) is source
    assert source.num_examples("validation") == builder.info.splits["validation"].num_examples
    assert len(source.split_ids("validation")) == source.num_examples("validation")
    assert source.class_names[0] == "Forest" and len(source.class_names) == 8
    with pytest.raises(UserError, match=r"dfc2020/dummy/1.0.0 has no split 'train'; it has \['test', 'validation'\]"):
        source.num_examples("train")
    with pytest.raises(UserError, match="is not a dataset: expected a built dataset folder"):
        as_source("nowhere/at/all")

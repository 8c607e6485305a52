"""Label tables and target derivation against a plain NumPy reference, eagerly and inside tf.data."""

import numpy as np
import pytest

from sslrs_tf.data import labels
from tests.helpers import eager_and_in_tf_data

# The mapping written out again by hand from SPEC §2, independent of the module's tables.
IGBP_NAMES_TO_DFC10 = {0: 0, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 2, 7: 2, 8: 3, 9: 3, 10: 4, 11: 5, 12: 6, 13: 7, 14: 6, 15: 8, 16: 9, 17: 10}
DFC10_TO_8 = {1: 0, 2: 1, 4: 2, 5: 3, 6: 4, 7: 5, 9: 6, 10: 7}


def np_dfc10_to_8(m):
    return np.vectorize(lambda v: DFC10_TO_8.get(int(v), 255), otypes=[np.uint8])(m)


def np_single(mask):
    valid = mask[mask != 255]
    if valid.size == 0:
        return -1
    return int(np.bincount(valid, minlength=8).argmax())


def np_multi(mask):
    counts = np.bincount(mask[mask != 255].ravel(), minlength=8)[:8]
    return (counts >= 0.1 * mask.size).astype(np.float32)


def test_tables_follow_the_spec():
    for igbp, dfc in IGBP_NAMES_TO_DFC10.items():
        assert labels.IGBP_TO_DFC10[igbp] == dfc
    mapped = labels.dfc10_to_classes(np.arange(11)).numpy()
    np.testing.assert_array_equal(mapped, np_dfc10_to_8(np.arange(11)))
    assert [labels.DFC10_NAMES[d] for d in (3, 8, 0)] == ["Savanna", "Snow/Ice", "no data"]


def test_mappings_on_random_masks_with_out_of_range_values():
    rng = np.random.default_rng(0)
    igbp = rng.integers(0, 20, (2, 32, 32)).astype(np.uint16)  # 18, 19 are not IGBP classes
    igbp[0, 0, 0] = 300
    eager, graph = eager_and_in_tf_data(labels.igbp_to_classes, igbp)
    dfc10 = np.vectorize(lambda v: IGBP_NAMES_TO_DFC10.get(int(v), 0))(igbp)
    expected = np_dfc10_to_8(dfc10)
    np.testing.assert_array_equal(eager, expected)
    np.testing.assert_array_equal(graph, expected)
    assert eager.dtype == np.uint8


@pytest.mark.parametrize("ignored_share", [0.0, 0.6, 0.97, 1.0])
def test_targets_on_random_masks(ignored_share):
    rng = np.random.default_rng(int(ignored_share * 100))
    masks = rng.choice(8, (16, 24, 24), p=rng.dirichlet(np.ones(8))).astype(np.uint8)
    masks[rng.random(masks.shape) < ignored_share] = 255
    single_eager, single_graph = eager_and_in_tf_data(labels.single_label, masks)
    multi_eager, multi_graph = eager_and_in_tf_data(labels.multi_label, masks)
    expected_single = np.array([np_single(m) for m in masks])
    expected_multi = np.stack([np_multi(m) for m in masks])
    np.testing.assert_array_equal(single_eager, expected_single)
    np.testing.assert_array_equal(single_graph, expected_single)
    np.testing.assert_array_equal(multi_eager, expected_multi)
    np.testing.assert_array_equal(multi_graph, expected_multi)
    # Unbatched, one mask at a time, gives the same.
    assert int(labels.single_label(masks[0])) == expected_single[0]


def test_ignored_pixels_never_win_the_vote():
    mask = np.full((10, 10), 255, np.uint8)
    mask[0, :3] = 4
    assert int(labels.single_label(mask)) == 4
    np.testing.assert_array_equal(labels.multi_label(mask).numpy(), np.zeros(8))  # 3 % of the pixels


# SEN12MS scene classification (Schmitt et al. 2019): the IGBP classes 1..17, and the simplified scheme's 10,
# written out by hand: Forest (IGBP 1-5), Shrubland (6-7), Savanna (8-9), Grassland (10), Wetlands (11),
# Croplands (12 and 14), Urban (13), Snow/Ice (15), Barren (16), Water (17).
IGBP_TO_SIMPLE = {1: 0, 2: 0, 3: 0, 4: 0, 5: 0, 6: 1, 7: 1, 8: 2, 9: 2, 10: 3, 11: 4, 12: 5, 13: 6, 14: 5, 15: 7,
                  16: 8, 17: 9}


@pytest.mark.parametrize("scheme, source, table, classes", [
    ("igbp", "lc", {v: v - 1 for v in range(1, 18)}, 17),
    ("igbp_simple", "lc", IGBP_TO_SIMPLE, 10),
    ("igbp_simple", "dfc", {v: v - 1 for v in range(1, 11)}, 10),  # DFC-10 is the simplified scheme
    ("dfc8", "dfc", DFC10_TO_8, 8),
])
def test_label_schemes_against_hand_made_tables(scheme, source, table, classes):
    rng = np.random.default_rng(7)
    mask = rng.integers(0, 20, (3, 16, 16)).astype(np.uint8)  # 0 (no data) and codes above the scheme's too
    expected = np.vectorize(lambda v: table.get(int(v), 255), otypes=[np.uint8])(mask)
    for got in eager_and_in_tf_data(lambda m: labels.to_scheme(m, source, scheme), mask):
        np.testing.assert_array_equal(got, expected)
    assert len(labels.SCHEMES[scheme]) == classes
    valid = expected[0][expected[0] != 255]
    single = labels.single_label(expected[0], classes).numpy()
    assert single == np.bincount(valid, minlength=classes).argmax()
    counts = np.bincount(valid, minlength=classes)
    np.testing.assert_array_equal(labels.multi_label(expected[0], classes).numpy(), counts >= 0.1 * 256)
    with pytest.raises(ValueError, match="label scheme 'igbp' cannot be derived from 'dfc' labels"):
        labels.to_scheme(mask, "dfc", "igbp")

import pytest

from sslrs_tf.data.bands import BAND_SETS, S2_BANDS, band_indices, resolve_bands


def test_band_sets_by_name_and_their_positions():
    assert resolve_bands("s2", "rgb") == ("B04", "B03", "B02")
    assert band_indices("s2", "rgb") == [3, 2, 1]
    assert band_indices("s2", "s2_10") == [1, 2, 3, 4, 5, 6, 7, 8, 11, 12]
    assert [S2_BANDS[i] for i in band_indices("s2", "s2_10")] == list(BAND_SETS["s2_10"])
    assert resolve_bands("s1") == ("VV", "VH")
    assert band_indices("s1", ["VH"]) == [1]


@pytest.mark.parametrize(
    "modality, bands, message",
    [
        ("s2", ["B04", "B13"], "s2 has no band 'B13'"),
        ("s1", ["HH"], "s1 has no band 'HH'"),
        ("s2", "infrared", "unknown band set 'infrared'"),
        ("s2", ["B04", "B04"], "must not repeat"),
        ("s3", None, "`modality` must be one of"),
    ],
)
def test_bad_band_requests_say_what_is_available(modality, bands, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        resolve_bands(modality, bands)

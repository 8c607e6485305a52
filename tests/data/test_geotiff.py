import numpy as np
import pytest

from sslrs_tf.data.geotiff import read_raster
from sslrs_tf.data.synthetic import write_geotiff
from sslrs_tf.errors import DataError


def test_int16_s2_is_clipped_at_zero_and_stored_as_uint16(tmp_path):
    data = np.array([[[-5] * 13, [12000] * 13]], np.int16)
    write_geotiff(tmp_path / "s2.tif", data, (0, 0), 32632)
    out = read_raster(tmp_path / "s2.tif", "s2")
    assert out.dtype == np.uint16 and out[0, 0, 0] == 0 and out[0, 1, 0] == 12000


def test_dfc_is_returned_as_a_2d_mask(tmp_path):
    write_geotiff(tmp_path / "dfc.tif", np.full((4, 4, 1), 7, np.int16), (0, 0), 32632)
    out = read_raster(tmp_path / "dfc.tif", "dfc", size=4)
    assert out.shape == (4, 4) and out.dtype == np.uint8 and (out == 7).all()


def test_missing_file_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="nope.tif: cannot be read as a GeoTIFF"):
        read_raster(tmp_path / "nope.tif", "s1")

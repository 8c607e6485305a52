"""Writes the `dummy_data/` folders of the builders from the synthetic world.

Run from the repository root after changing the synthetic world or the layouts:

    python tfds_builders/make_dummy_data.py

The dummy data uses 32 px patches (the tests build the datasets with
``patch_size=32``) and carries the defects the builders must handle: a
SEN12MS triplet whose s2 file is missing, an S1 patch with NaN, a DFC2020
validation split in the research code's `s1_0` naming, and paired chips with
a missing s1 file and an S1 chip with NaN, and an SSL4EO-S12 location missing a
season.
"""

import argparse
import pathlib
import shutil

import numpy as np
import rasterio

from sslrs_tf.data import layout, synthetic

SIZE = 32
SEED = 2020
HERE = pathlib.Path(__file__).parent


def _nan_block(path):
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        data[:, 4:12, 4:12] = np.nan
        dst.write(data)


def make_sen12ms(out):
    """12 triplets in four seasons (one scene each): one loses its s2 file, one gets NaN in S1."""
    written = synthetic.generate_sen12ms(out, patches=12, size=SIZE, seed=SEED)
    (out / written[0]).unlink()  # a triplet with its s2 missing
    _nan_block(out / written[4].replace("_s2_", "_s1_").replace("/s2_", "/s1_"))


def make_dfc2020(out):
    """6 validation patches in the research code's `*_0` naming and 4 test patches; one validation S1 has NaN."""
    synthetic.generate_dfc2020(out, {"validation": 6, "test": 4}, size=SIZE, seed=SEED, folder_suffix="0")
    _nan_block(out / layout.dfc2020_path("validation", "s1", 2, "0"))


def make_paired_chips(out):
    """10 segmentation chips with a manifest: one loses its s1 file, one gets NaN in S1 (nodata)."""
    synthetic.generate_chips(out, 10, SIZE, SEED, task="segmentation")
    (out / "chip004_s1.tif").unlink()
    _nan_block(out / "chip007_s1.tif")


def make_ssl4eo_s12(out):
    """3 locations of 4 seasons (S1 and S2 L1C, 12 px at 10 m: 6 px and 2 px coarser bands); one location lacks its
    last S2 season."""
    synthetic.generate_ssl4eo(out, 3, 12, SEED)
    last = sorted((out / "s2c" / "0000001").iterdir())[-1]
    shutil.rmtree(last)


def main(root=HERE):
    """(Re)writes the ``dummy_data`` folder of each builder below `root`."""
    root = pathlib.Path(root)
    for name, make in (("sen12ms", make_sen12ms), ("dfc2020", make_dfc2020), ("paired_chips", make_paired_chips),
                       ("ssl4eo_s12", make_ssl4eo_s12)):
        out = root / name / "dummy_data"
        shutil.rmtree(out, ignore_errors=True)
        make(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(HERE), help="folder holding the builders' folders")
    main(parser.parse_args().root)

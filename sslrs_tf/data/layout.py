"""The on-disk layouts of SEN12MS and DFC2020 (SPEC §1): folder and file names.

Shared by the TFDS builders (which read them) and the synthetic world (which
writes them), so that both agree with the real archives by construction.
"""

import re

SEASON_FOLDERS = {
    "spring": "ROIs1158_spring",
    "summer": "ROIs1868_summer",
    "fall": "ROIs1970_fall",
    "winter": "ROIs2017_winter",
}
SEASONS = tuple(SEASON_FOLDERS)
SEN12MS_KINDS = ("s1", "s2", "lc")

# DFC2020: the official archive names the validation folders `s1_validation` ...;
# the research code expects them renamed `s1_0` .... Both are accepted.
DFC2020_SPLITS = {
    "validation": ("ROIs0000_validation", ("validation", "0")),
    "test": ("ROIs0000_test", ("0",)),
}
DFC2020_KINDS = ("s1", "s2", "lc", "dfc")

_PATCH_RE = re.compile(r"_p(\d+)\.tif$")


def sen12ms_path(season, kind, scene, patch):
    """Relative path of one SEN12MS file, e.g. ``ROIs1158_spring/s1_1/ROIs1158_spring_s1_1_p30.tif``."""
    roi = SEASON_FOLDERS[season]
    return f"{roi}/{kind}_{scene}/{roi}_{kind}_{scene}_p{patch}.tif"


def dfc2020_path(split, kind, patch, suffix=None):
    """Relative path of one DFC2020 file; `suffix` is the folder suffix (``validation`` or ``0``)."""
    roi, suffixes = DFC2020_SPLITS[split]
    suffix = suffix or suffixes[0]
    return f"{roi}/{kind}_{suffix}/{roi}_{kind}_0_p{patch}.tif"


def patch_id(filename):
    """The patch number of a SEN12MS or DFC2020 file name, or ``None`` if it is not one."""
    match = _PATCH_RE.search(str(filename))
    return int(match.group(1)) if match else None

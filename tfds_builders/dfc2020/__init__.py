"""DFC2020: the IEEE GRSS Data Fusion Contest 2020 patches with high-resolution land-cover labels."""

from tfds_builders.dfc2020.dfc2020_dataset_builder import Builder, Dfc2020Config  # noqa: F401

"""Paired chips: your own co-registered Sentinel-1/Sentinel-2 chips, listed by a manifest or named by a pattern."""

from tfds_builders.paired_chips.paired_chips_dataset_builder import Builder, PairedChipsConfig  # noqa: F401

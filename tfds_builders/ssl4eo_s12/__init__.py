"""SSL4EO-S12: Sentinel-1/Sentinel-2 patches of 251 079 locations, four seasons each (unlabelled)."""

from tfds_builders.ssl4eo_s12.ssl4eo_s12_dataset_builder import Builder, Ssl4eoS12Config  # noqa: F401

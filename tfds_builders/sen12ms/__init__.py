"""SEN12MS: co-registered Sentinel-1/Sentinel-2/MODIS triplets (pre-training)."""

from tfds_builders.sen12ms.sen12ms_dataset_builder import Builder, Sen12msConfig  # noqa: F401

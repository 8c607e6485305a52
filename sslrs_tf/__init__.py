"""sslrs_tf: contrastive self-supervised learning on Sentinel-1/Sentinel-2 data with TensorFlow/Keras."""

__version__ = "0.1.0"

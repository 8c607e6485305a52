"""sslrs_tf: contrastive self-supervised learning on Sentinel-1/Sentinel-2 data with TensorFlow/Keras."""

import os

# TensorFlow turns its oneDNN CPU kernels on by default only on some Intel CPUs.
# On the AMD EPYC machines this library is benchmarked on, turning them on made
# ResNet training 1.4-1.6x faster (bench/README.md). It only takes effect when
# sslrs_tf is imported before tensorflow; TF_ENABLE_ONEDNN_OPTS=0 keeps TF's choice.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

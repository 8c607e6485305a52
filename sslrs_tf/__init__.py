"""sslrs_tf: contrastive self-supervised learning on Sentinel-1/Sentinel-2 data with TensorFlow/Keras."""

import os

# TensorFlow turns its oneDNN CPU kernels on by default only on some Intel CPUs.
# On the AMD EPYC machines this library is benchmarked on, turning them on made
# the Dual-SimCLR training step 1.38x faster (bench/README.md, cpu_settings.py). It only takes effect when
# sslrs_tf is imported before tensorflow; TF_ENABLE_ONEDNN_OPTS=0 keeps TF's choice.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

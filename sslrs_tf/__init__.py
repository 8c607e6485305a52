"""sslrs_tf: contrastive self-supervised learning on Sentinel-1/Sentinel-2 data with TensorFlow/Keras."""

import os
import sys

# TensorFlow turns its oneDNN CPU kernels on by default only on some Intel CPUs.
# On the AMD EPYC machines this library is benchmarked on, turning them on made
# ResNet training 1.4-1.6x faster (bench/README.md). It only takes effect when
# sslrs_tf is imported before tensorflow; TF_ENABLE_ONEDNN_OPTS=0 keeps TF's choice.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# The package's commands keep TensorFlow's start-up logs out of their output; imported as a
# library, it leaves the host program's logging alone. `python -m sslrs_tf.<module>` imports
# this package while sys.argv[0] is still "-m" (documented for the -m option); train.py,
# evaluate.py and the console commands call sslrs_tf.cli.quiet() themselves.
if sys.argv[:1] == ["-m"]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

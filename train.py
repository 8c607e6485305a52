"""Pre-train encoders, or train a downstream model: ``python train.py --config FILE_OR_NAME [key=value ...]``.

Examples:
    python train.py --config dual_simclr.yaml
    python train.py --config configs/dual_simclr.yaml data.source=synthetic train.epochs=2

The same as the installed command ``sslrs-train`` (:func:`sslrs_tf.cli.train_main`).
"""

import sys

from sslrs_tf.cli import train_main as main

if __name__ == "__main__":
    sys.exit(main())

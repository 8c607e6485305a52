"""Evaluate a downstream run, or run a whole comparison protocol.

    python evaluate.py --run RUN_DIR [--split test]
    python evaluate.py --protocol protocol_isprs.yaml [key=value ...]

The same as the installed command ``sslrs-evaluate`` (:func:`sslrs_tf.cli.evaluate_main`).
"""

import sys

from sslrs_tf.cli import evaluate_main as main

if __name__ == "__main__":
    sys.exit(main())

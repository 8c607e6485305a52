"""The shipped run configs, installed with the package as ``sslrs_tf.configs``.

Each YAML file here is a config for ``train.py`` / ``sslrs-train`` (or a protocol file for
``evaluate.py --protocol``); its first lines say what it runs and what that costs. A ``--config``
that is not an existing file is looked up here by name: ``--config dual_simclr.yaml`` or
``--config dual_simclr`` (:func:`sslrs_tf.config.find_config`).
"""

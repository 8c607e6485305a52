"""TFDS builders of the datasets sslrs_tf trains on, one folder per dataset (TFDS layout)."""

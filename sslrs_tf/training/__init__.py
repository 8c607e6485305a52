"""Training: distribution strategy, run directory, callbacks, the training driver."""

"""Trained models put to work outside training: a serving SavedModel (and, from scenes, maps and embeddings)."""

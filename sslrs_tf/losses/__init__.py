"""Losses as pure functions of embeddings."""

"""Data layer: bands, normalisation, labels, GeoTIFF reading, input pipelines, synthetic world."""

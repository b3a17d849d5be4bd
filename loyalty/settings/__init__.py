"""Settings package: base (development and the embedded default), production, test."""

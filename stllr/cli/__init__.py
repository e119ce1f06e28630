"""Command-line face of the toolkit (``stllr ...``)."""

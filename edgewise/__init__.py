"""edgewise: turn a fine-tuned transformer classifier into a small, fast, verified edge model."""

__version__ = "0.1.0"

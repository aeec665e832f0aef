"""wsianon: remove every trace of patient identity from whole slide images, and prove it."""

__version__ = "0.1.0"

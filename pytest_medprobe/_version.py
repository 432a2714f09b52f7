"""The package version, apart from ``__init__``: modules read it without importing the public API."""

__version__ = "0.1.0"

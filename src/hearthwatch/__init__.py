"""hearthwatch: self-hosted AI inference for home-security cameras."""

__version__ = "0.1.0"

"""The revisions, oldest first by number; each is applied in its own run of ``upgrade``."""

"""Enrichment model plugins: one config class and one hook class per model type."""

"""LLM engines as plugins keyed by ``type``: how to start each one and where it listens."""

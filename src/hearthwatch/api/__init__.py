"""HTTP surface: FastAPI app and routers. Thin: parse, call a runtime service, shape the reply."""

"""Model sources: plugins keyed by ``type``, each with its own pydantic config, that load a
detection model and expose it through the :class:`~.base.Detector` hooks."""

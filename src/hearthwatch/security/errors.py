"""The camera pipeline's errors, each of a runtime kind so the HTTP layer maps it without
knowing it (unknown → 404, conflict → 409, invalid → 400, full → 503 with Retry-After).
Plain data: safe on any thread."""

from __future__ import annotations

from hearthwatch.runtime.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
)


class UnknownCameraError(NotFoundError):
    def __init__(self, camera_id: str):
        super().__init__(f"unknown camera '{camera_id}'")
        self.camera_id = camera_id


class UnknownEventError(NotFoundError):
    def __init__(self, event_id: str):
        super().__init__(f"unknown event '{event_id}'")


class CameraConflictError(ConflictError):
    """A camera id already taken, or a camera the cameras file defines (edit the file)."""


class InvalidCameraError(InvalidInputError):
    """A camera definition that cannot be used: a bad field, a source outside the roots or
    the allowed hosts."""


class NotAPushCameraError(ConflictError):
    def __init__(self, camera_id: str, source_type: str):
        super().__init__(
            f"camera '{camera_id}' reads its frames from its {source_type} source; frames "
            "can be pushed only to a camera whose source type is push"
        )


class CameraDisabledError(ConflictError):
    def __init__(self, camera_id: str):
        super().__init__(f"camera '{camera_id}' is disabled")


class DetectionQueueFullError(OverloadedError):
    def __init__(self, limit: int):
        super().__init__(
            f"the detection queue is full ({limit} frames waiting); send again later",
            retry_after_s=1,
        )


class PipelineClosedError(OverloadedError):
    def __init__(self) -> None:
        super().__init__("the camera pipeline is shutting down", retry_after_s=5)

"""The LLM service's error base class and its errors, in one place.

Every error the LLM service raises on purpose derives from :class:`LlmError`. The gateway maps
the admission and engine errors to :class:`GatewayError` (an HTTP status, a message and an
OpenAI error ``code``) in one place, :meth:`~hearthwatch.llm.gateway.LlmGateway.admit` and its
streaming path; the HTTP layer maps only :class:`GatewayError`. Plain data: safe on any thread.
"""

from __future__ import annotations


class LlmError(Exception):
    """Base of every error the LLM service raises on purpose."""


class ProfileError(LlmError, ValueError):
    """The profile name or file cannot be used."""


class EngineStartError(LlmError, RuntimeError):
    """The engine did not become healthy within its start-up timeout."""


class UpstreamError(LlmError):
    """The engine's connection failed, or what came back was not an HTTP reply."""


class AdmissionFullError(LlmError):
    """Every session is busy and the queue is full: refused at once, nothing of it ran."""

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class AdmissionClosedError(LlmError):
    """The server is shutting down: no more requests are admitted."""


class SessionTimeoutError(LlmError, TimeoutError):
    """The request's timeout passed while it waited for a session."""


class ClientDisconnectedError(LlmError):
    """The client went away while its request waited."""


class GatewayError(LlmError):
    """An answer other than a completion: ``status``, a message and an OpenAI error ``code``;
    every 503 carries a ``retry_after_s``."""

    def __init__(
        self, status: int, message: str, code: str, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.retry_after_s = retry_after_s if retry_after_s or status != 503 else 1

    @property
    def outcome(self) -> str:
        """The ``status`` label of ``hearthwatch_llm_requests_total`` for this error."""
        if self.status == 504:
            return "timeout"
        return "engine_error" if self.status >= 500 else "bad_request"

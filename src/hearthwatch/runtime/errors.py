"""The runtime's error base class and the kinds of failure a caller tells apart.

Every error the runtime raises on purpose derives from :class:`ServingError`, through one of
the kinds below when it is one, so a caller (the HTTP layer) maps them by kind in one place
without knowing every class:

- :class:`OverloadedError`: no room now (a full queue, a full model zoo, a batcher shutting
  down); ``retry_after_s`` says when to come back. Nothing of the request ran.
- :class:`InvalidInputError`: the input itself is unusable (an image, a box, a model name);
  :class:`InputTooLargeError` when it is too large to take at all.
- :class:`NotFoundError`: the thing named does not exist; :class:`ConflictError`: it cannot be
  done to the thing in its present state (it exists already, it is defined elsewhere).
- a passed deadline is :class:`~hearthwatch.runtime.serving.batcher.DeadlineExceededError`
  (also a :class:`TimeoutError`).

Errors of the kinds no caller handles (a model out of memory, a bad models file) derive from
:class:`ServingError` directly or through a builtin kind (``ValueError``) where callers
already catch that. Plain data: safe on any thread.
"""

from __future__ import annotations


class ServingError(Exception):
    """Base of every error the runtime (the generic serving core) raises on purpose."""


class OverloadedError(ServingError):
    """No room for the request now; nothing of it ran. Come back after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InvalidInputError(ServingError, ValueError):
    """An input the runtime cannot use; the message says what is wrong with it."""


class InputTooLargeError(InvalidInputError):
    """An input too large to take at all, whatever the load."""


class NotFoundError(ServingError, LookupError):
    """What the request names does not exist; the message names it."""


class ConflictError(ServingError):
    """The request cannot be applied to what it names in its present state."""

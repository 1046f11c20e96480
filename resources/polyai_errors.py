"""The errors the PolyAI client raises, and its private retry signal.

Callers import them from :mod:`resources.polyai_api`, next to the client; they live here so
that the client and the response reader (:mod:`resources.polyai_responses`) can both raise
them. The family, under :class:`core.errors.PolyAISyncError`::

    PolyAIError
    ├── PolyAIHTTPError              an error status, with the server's detail
    │   ├── PolyAIAuthError          401/403: the key, ids or region
    │   ├── CursorRejectedError      400 on a cursor: the window restarts
    │   └── PolyAIUnavailableError * 429/5xx still, after every retry
    ├── PolyAIResponseError          a body that is not the documented shape
    └── PolyAITransportError *       unreachable, or timed out, after every retry

``*``: transient, the same request may succeed later.
"""

from __future__ import annotations

from core.env import Env
from core.errors import PolyAISyncError


class PolyAIError(PolyAISyncError):
    """Base of every error the client raises."""


class PolyAIHTTPError(PolyAIError):
    """The API answered with an error status; the message carries the server's detail."""

    def __init__(self, status: int, detail: str, where: str) -> None:
        super().__init__(f"PolyAI API returned HTTP {status} for {where}: {detail}")
        self.status = status
        self.detail = detail


class PolyAIAuthError(PolyAIHTTPError):
    """401/403: the key is missing, wrong, or not scoped to this project and region."""

    def __init__(self, status: int, detail: str, where: str) -> None:
        super().__init__(status, detail, where)
        # What a person can act on: the settings that decide which key is sent where.
        self.args = (
            f"{self.args[0]}. The API refused the key: check {Env.POLYAI_API_KEY} (a key of "
            f"this project), {Env.POLYAI_ACCOUNT_ID} and {Env.POLYAI_PROJECT_ID}, and "
            f"{Env.POLYAI_REGION} or {Env.POLYAI_BASE_URL} (keys are scoped to one region)",
        )


class CursorRejectedError(PolyAIHTTPError):
    """400 for a request that carried a cursor: the window must be restarted."""


class PolyAIResponseError(PolyAIError):
    """The API answered 200 with a body that is not the documented shape."""


class PolyAIUnavailableError(PolyAIHTTPError):
    """429 or 5xx on every attempt: the API is busy or down; later may do."""

    transient = True


class PolyAITransportError(PolyAIError):
    """The API could not be reached (connection refused, timeouts) after every retry."""

    transient = True


class _Transient(Exception):
    """A failure worth retrying; carries the server's Retry-After when it gave one.

    Private to the client (``resources/polyai_*.py``): raised to its retry loop, which turns
    the last one into :class:`PolyAIUnavailableError` or :class:`PolyAITransportError`."""

    def __init__(
        self, reason: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after

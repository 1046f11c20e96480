"""The errors the PolyAI client raises, and its private retry signal.

Callers import them from :mod:`resources.polyai_api`, next to the client; they live here so
that the client and the response reader (:mod:`resources.polyai_responses`) can both raise
them. The family, under :class:`core.errors.PolyAISyncError`::

    PolyAIError
    ├── PolyAIHTTPError              an error status, with the server's error envelope
    │   ├── PolyAIAuthError          401/403: the key, ids or region
    │   ├── CursorRejectedError      400 on a cursor: the window restarts
    │   └── PolyAIUnavailableError * 429/5xx still, after every retry
    ├── PolyAIResponseError          a body that is not the documented shape
    └── PolyAITransportError *       unreachable, or timed out, after every retry

``*``: transient, the same request may succeed later.

Every :class:`PolyAIHTTPError` carries what PolyAI's published error envelope says
(:data:`core.api_contract.E_ERROR_CODE`, ``E_ERROR_MESSAGE``, ``E_ERROR_ID``) as
``error_code``, ``error_message`` and ``error_id`` (the request's correlation id, which PolyAI
support asks for), shows them in its message, and names the likely cause of a 401, 403 or 404.
The client puts every part through its key scrubber before building one.
"""

from __future__ import annotations

from typing import Any

from core import api_contract as api
from core.env import Env
from core.errors import PolyAISyncError


class PolyAIError(PolyAISyncError):
    """Base of every error the client raises."""


class PolyAIHTTPError(PolyAIError):
    """The API answered with an error status: its ``error_code``, message and ``error_id``,
    and what likely caused it.

    ``detail`` (also ``error_message``) is the server's message: the envelope's
    ``error_message``, else its ``error``, else a FastAPI-style ``detail``, else the start of
    the body. ``error_id`` is the envelope's, else the correlation id header's. ``host`` is
    the API host the client asked (never a key).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        where: str,
        *,
        error_code: str | None = None,
        error_id: str | None = None,
        host: str | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.where = where
        self.error_code = error_code or None
        self.error_id = error_id or None
        self.host = host or None
        super().__init__(self._compose())

    @property
    def error_message(self) -> str:
        """The server's message (the same as ``detail``)."""
        return self.detail

    def _compose(self) -> str:
        code = f" {self.error_code}" if self.error_code else ""
        parts = [f"PolyAI API returned HTTP {self.status}{code} for {self.where}:"]
        parts.append(_sentence(self.detail))
        parts += self._after_detail()
        if self.error_id:
            parts.append(f"(error_id {self.error_id}, quote it to PolyAI support)")
        hint = likely_cause(self.status, self.error_code, self.host)
        if hint:
            parts.append(hint)
        return " ".join(parts)

    def _after_detail(self) -> list[str]:
        """What a subclass says after the server's message."""
        return []


def likely_cause(status: int, error_code: str | None, host: str | None) -> str | None:
    """What a person can act on for a 401, 403 or 404: the settings that decide which key is
    sent where (PolyAI's guide: a key of another region is refused with 401; a 404 is often
    the wrong host)."""
    asked = f" (this client asked {host})" if host else ""
    if status == 401:
        return (
            f"The API did not accept the key; a key of another region is refused with 401: "
            f"check {Env.POLYAI_REGION} / {Env.POLYAI_BASE_URL}{asked}, and "
            f"{Env.POLYAI_API_KEY} (keys are scoped to a project and a region)."
        )
    if status == 403:
        return (
            f"The API refused the key: check {Env.POLYAI_API_KEY} (a key of this project), "
            f"{Env.POLYAI_ACCOUNT_ID} and {Env.POLYAI_PROJECT_ID}, and {Env.POLYAI_REGION} "
            f"or {Env.POLYAI_BASE_URL}{asked} (keys are scoped to one region)."
        )
    if status == 404 and error_code == api.PROJECT_NOT_FOUND:
        where = f"{host}, the host this client asked," if host else "the host"
        return (
            f"The API does not know this project: check {Env.POLYAI_ACCOUNT_ID} (the "
            f"workspace id, ws-...) and {Env.POLYAI_PROJECT_ID} (the agent id, PROJECT-...), "
            f"and that {where} serves the project's region ({Env.POLYAI_REGION} / "
            f"{Env.POLYAI_BASE_URL})."
        )
    if status == 404:
        return (
            f"A 404 is often the wrong host{asked}: {api.WRONG_HOST_HINT}; check "
            f"{Env.POLYAI_REGION} / {Env.POLYAI_BASE_URL}."
        )
    return None


def _sentence(text: str) -> str:
    """``text`` ended as a sentence, so that what follows it reads apart from it."""
    text = text.strip()
    return text if text.endswith((".", "!", "?", ")")) else f"{text}."


class PolyAIAuthError(PolyAIHTTPError):
    """401/403: the key is missing, wrong, or not scoped to this project and region."""


class CursorRejectedError(PolyAIHTTPError):
    """400 for a request that carried a cursor: the window must be restarted."""


class PolyAIResponseError(PolyAIError):
    """The API answered 200 with a body that is not the documented shape."""


class PolyAIUnavailableError(PolyAIHTTPError):
    """429 or 5xx on every attempt: the API is busy or down; later may do. ``detail`` is what
    the server said the last time; ``attempts`` how many times the client asked."""

    transient = True

    def __init__(
        self, status: int, detail: str, where: str, *, attempts: int | None = None, **envelope: Any
    ) -> None:
        self.attempts = attempts
        super().__init__(status, detail, where, **envelope)

    def _after_detail(self) -> list[str]:
        return [f"(gave up after {self.attempts} attempts)"] if self.attempts else []


class PolyAITransportError(PolyAIError):
    """The API could not be reached (connection refused, timeouts) after every retry."""

    transient = True


class _Transient(Exception):
    """A failure worth retrying; carries the server's Retry-After when it gave one, and for
    an error status its ``error_code`` and ``error_id`` (shown in the retry warning).

    Private to the client (``resources/polyai_*.py``): raised to its retry loop, which turns
    the last one into :class:`PolyAIUnavailableError` or :class:`PolyAITransportError`."""

    def __init__(
        self,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
        *,
        error_code: str | None = None,
        error_id: str | None = None,
    ) -> None:
        summary = reason
        if status is not None:
            code = f" {error_code}" if error_code else ""
            said = f" (error_id {error_id})" if error_id else ""
            summary = f"HTTP {status}{code}: {reason}{said}"
        super().__init__(summary)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.error_code = error_code
        self.error_id = error_id

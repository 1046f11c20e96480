"""Pagination: small objects with one job each, apart from HTTP and from loading.

A paginator says which position parameter the next request carries, reads the next position
from a response body, and decides whether there is another page. Both of the API's styles are
here: the keyset ``cursor`` (what a sync uses) and the legacy ``offset``.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from core import api_contract as api
from core.errors import PolyAISyncError

PaginationStyle = Literal["cursor", "offset"]


class PaginationError(PolyAISyncError, RuntimeError):
    """The API's pagination did not advance; following it would loop forever."""


class Paginator(Protocol):
    def position(self) -> dict[str, Any]:
        """The parameters that place the next request (empty for the first page)."""
        ...

    def advance(self, body: dict[str, Any]) -> bool:
        """Read the next position from a page's body; ``False`` when it was the last page."""
        ...


MAX_EMPTY_PAGES = 100
"""Empty pages in a row that still carry a cursor, followed before giving up."""
MAX_STALE_PAGES = 20
"""Pages in a row that bring no conversation not seen earlier in the query, followed before
giving up: an API that serves the same conversations under ever new cursors never ends."""
MAX_CURSOR_LENGTH = 4096
"""The longest cursor followed: it travels in the URL (servers refuse URLs of ~8 KB), and a
window's state keeps it, so a longer one would fail every re-run the same way."""


class CursorPaginator:
    """Follows the opaque ``cursor`` until it is null. An empty page with a cursor is
    followed (an API may hand one out mid-scan; stopping there would lose what comes after),
    up to ``MAX_EMPTY_PAGES`` in a row."""

    def __init__(self) -> None:
        self.cursor: str | None = None
        self._seen: set[str] = set()
        self._empty_in_a_row = 0
        self._ids: set[int] = set()
        """Hashes of the ids served so far (~40 bytes each, not the ids themselves)."""
        self._stale_in_a_row = 0

    def position(self) -> dict[str, Any]:
        return {api.P_CURSOR: self.cursor} if self.cursor is not None else {}

    def advance(self, body: dict[str, Any]) -> bool:
        cursor = body.get(api.R_CURSOR) or None
        conversations = body.get(api.R_CONVERSATIONS) or []
        if cursor is None:
            return False
        if not isinstance(cursor, str):
            raise PaginationError(
                f"the API returned a cursor that is a JSON {type(cursor).__name__}, not a "
                f"string: {str(cursor)[:80]}"
            )
        if len(cursor) > MAX_CURSOR_LENGTH:
            raise PaginationError(
                f"the API returned a cursor of {len(cursor):,} characters, longer than the "
                f"{MAX_CURSOR_LENGTH:,} a URL can carry: {cursor[:40]}..."
            )
        self._empty_in_a_row = 0 if conversations else self._empty_in_a_row + 1
        if self._empty_in_a_row > MAX_EMPTY_PAGES:
            raise PaginationError(
                f"the API returned {self._empty_in_a_row} empty pages in a row, each with a "
                "cursor; giving up rather than looping"
            )
        if conversations:
            ids = {hash(c.get("id")) for c in conversations if isinstance(c, dict)}
            self._stale_in_a_row = 0 if ids - self._ids else self._stale_in_a_row + 1
            self._ids |= ids
            if self._stale_in_a_row > MAX_STALE_PAGES:
                raise PaginationError(
                    f"the API returned {self._stale_in_a_row} pages in a row that brought no "
                    "conversation not seen earlier in this query, each with a new cursor; "
                    "giving up rather than paging forever"
                )
        if cursor in self._seen:
            raise PaginationError(f"the API returned cursor {cursor[:80]!r} twice")
        self._seen.add(cursor)
        self.cursor = cursor
        return True


class OffsetPaginator:
    """Follows ``next_offset``; stops when it is absent or a page is empty."""

    def __init__(self) -> None:
        self.offset = 0

    def position(self) -> dict[str, Any]:
        return {api.P_OFFSET: self.offset} if self.offset else {}

    def advance(self, body: dict[str, Any]) -> bool:
        next_offset = body.get(api.R_NEXT_OFFSET)
        if next_offset is None or not body.get(api.R_CONVERSATIONS):
            return False
        if not isinstance(next_offset, int) or next_offset <= self.offset:
            raise PaginationError(
                f"the API returned next_offset {next_offset!r} after offset {self.offset}"
            )
        self.offset = next_offset
        return True


def paginator(style: PaginationStyle) -> Paginator:
    if style == "cursor":
        return CursorPaginator()
    if style == "offset":
        return OffsetPaginator()
    raise ValueError(f"pagination style {style!r} is not 'cursor' or 'offset'")

"""What syncing a window came to: published (:class:`WindowSyncResult`) or failed on its own
(:class:`WindowFailure`), which errors are a window's own (:func:`fails_alone`), and the
warnings a published window's numbers alone would not give."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from core.env import DEFAULTS, Env
from core.errors import TRANSIENT_NOTE, PolyAISyncError
from core.pagination import PaginationError
from core.records import RecordError
from core.windows import Scope, Window
from resources.polyai_api import RequestStats
from resources.polyai_errors import PolyAIAuthError, PolyAIHTTPError, PolyAIResponseError
from resources.warehouse import Collision, SyncState, WarehouseSizeError

DEFAULT_MAX_QUARANTINED_FRACTION = float(DEFAULTS[Env.POLYAI_QUARANTINE_MAX_FRACTION])


class QuarantineThresholdError(PolyAISyncError, RuntimeError):
    """More of a window's records failed validation than the configured share allows."""


@dataclass
class WindowSyncResult:
    scope: Scope
    window: Window
    load_id: str = ""
    pages: int = 0
    """Pages requested and committed by this run."""
    resumed_from_page: int | None = None
    """The first page this run requested, when it resumed an interrupted load."""
    conversations_fetched: int = 0
    restarts: int = 0
    quarantined: int = 0
    in_progress: int = 0
    type_issues: Counter[str] = field(default_factory=Counter)
    rows: dict[str, int] = field(default_factory=dict)
    """Rows the window holds in each table after publishing."""
    replaced: int = 0
    """Conversations the window held before publishing."""
    collisions: tuple[Collision, ...] = ()
    """Conversations this load brought that another window holds: set aside, not loaded."""

    @property
    def shrank(self) -> bool:
        """Whether the window now holds fewer than half the conversations it held before
        (loaded: the API may really hold fewer; reported, as that is rarely why)."""
        return 2 * self.rows.get("conversations", 0) < self.replaced

    requests: RequestStats = field(default_factory=RequestStats)


@dataclass(frozen=True)
class WindowFailure:
    """A window that failed on its own (:func:`fails_alone`): the others of the sync went on.
    Its state says ``failed`` and why; what its tables held before stays."""

    scope: Scope
    window: Window
    error: Exception
    result: WindowSyncResult
    """What the attempt counted (requests, pages committed)."""
    resumes: bool
    """Whether the next sync resumes after the pages committed (the API was unavailable, or
    the publish needs more memory than allowed), or fetches the window from its first page
    (nothing of this walk is trusted)."""
    staged: bool = False
    """Whether every page was in (the publish failed): a re-run publishes them."""

    @property
    def message(self) -> str:
        """The error, and what a re-run will do."""
        text = str(self.error).strip()
        if not text.endswith((".", ")")):
            text += "."
        if self.staged:
            again = "a re-run publishes the pages staged, without fetching them"
        elif self.resumes:
            page = self.result.pages + (self.result.resumed_from_page or 1)
            again = f"a re-run resumes at page {page}"
        else:
            again = "a re-run fetches the window again from its first page"
        transient = isinstance(self.error, PolyAISyncError) and self.error.transient
        return f"{text} ({again})" + (TRANSIENT_NOTE if transient else "")


def keeps_walk(error: BaseException) -> bool:
    """Whether a window failing with ``error`` keeps its pages and cursor for the next sync:
    the error says nothing against them (the API unavailable, a transient error; a publish
    over the memory ceiling)."""
    return isinstance(error, WarehouseSizeError) or (
        isinstance(error, PolyAISyncError) and error.transient
    )


def fails_alone(error: BaseException) -> bool:
    """Whether ``error`` concerns its window only, so the sync goes on with the others: too
    many invalid records, an endless or rejected cursor, an invalid response, an error status
    (even after every retry). Not a refused key, an unreachable API or warehouse, a bug or an
    interrupt: those concern every window, and stop the sync at once. (A publish over the
    memory ceiling is its window's alone.)"""
    if isinstance(error, PolyAIHTTPError):
        return not isinstance(error, PolyAIAuthError)
    return isinstance(
        error,
        QuarantineThresholdError
        | PaginationError
        | PolyAIResponseError
        | RecordError
        | WarehouseSizeError,  # this window's size: the others may fit
    )


def check_quarantine(state: SyncState, result: WindowSyncResult, max_fraction: float) -> None:
    result.quarantined = state.quarantined
    result.in_progress = state.in_progress
    seen = state.conversations + state.quarantined
    if seen and state.quarantined / seen > max_fraction:
        raise QuarantineThresholdError(
            f"{result.scope.key} {result.window.start:%Y-%m-%d}: {state.quarantined} of {seen} "
            f"records failed validation, more than the allowed {max_fraction:.1%}; they are in "
            f"the quarantine table under load_id {state.load_id}. The window was not published; "
            f"re-run after fixing the source or raising {Env.POLYAI_QUARANTINE_MAX_FRACTION}."
        )


def report(result: WindowSyncResult, log: logging.Logger | logging.LoggerAdapter) -> None:
    """Warn of what a published window's numbers alone would not show."""
    where = f"{result.scope.key} {result.window.start:%Y-%m-%d}"
    if result.collisions:
        shown = ", ".join(
            f"{c.conversation_id} (held by {c.held_by})" for c in result.collisions[:5]
        )
        more = len(result.collisions) - 5
        log.warning(
            f"{where}: {len(result.collisions)} conversation(s) the API served for this "
            f"window are already held by another window or scope: {shown}"
            + (f" and {more} more" if more > 0 else "")
            + "; each stays with that window, this load's copy is in the quarantine table "
            f"(load_id {result.load_id}, reason 'collision: ...')"
        )
    if result.shrank:
        log.warning(
            f"{where}: the window held {result.replaced} conversations and now holds "
            f"{result.rows['conversations']}: the API served far fewer than before"
        )

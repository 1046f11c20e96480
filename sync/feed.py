"""The pages of the windows a sync loads, fetched and normalized ahead of the writer.

A sync's work has two halves: fetching, parsing and normalizing a page (Python), and
committing and publishing it (DuckDB or PostgreSQL). A :class:`PageFeed` does the first half in
child processes, one *lane* per core by default, each on a window of its own, while the sync
does the second in its own process; a thread would not do, as every warehouse call gives up
the GIL and then waits its turn to take it back behind the busy normalizing thread (measured:
200 trivial DuckDB queries took 18 ms alone and 3.8 s beside one).

A child is forked. When the rows travel to the sync (PostgreSQL stages them in the page's
transaction) a page comes back as its Arrow batch and the child stays exactly one page ahead:
it fetches page *k + 1* only once the sync has taken page *k*, so a kill re-requests at most
the page being staged and the one being fetched. When the child stages the rows itself
(DuckDB's files, :mod:`resources.warehouse.staging`) only the page's counts travel, and it
runs up to :data:`AHEAD_PAGES` ahead: the pages it staged are committed from their files by a
load that resumes. The sync submits windows as lanes come free (the next when this one's last
page arrives), and takes their pages in the order it submitted them.

A child ignores Ctrl-C and takes SIGTERM's default (the sync handles both, and closes the
feed); it ends when the sync closes the feed or its end of the pipe closes (the sync was
killed).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import pickle
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any, Generic, Protocol, TypeVar

from core.normalize import Batch, normalize_page
from resources.polyai_api import PolyAIClient, RequestStats, ssl_context
from resources.polyai_responses import Turn
from resources.warehouse import WindowKey


class Counted(Protocol):
    """What a fetch's request figures are counted in (the sync's result for the window)."""

    requests: RequestStats


R = TypeVar("R", bound=Counted)

_TAKEN = "taken"
AHEAD_PAGES = 4
"""Pages the child may send before the sync took them, when it stages their rows itself (files
whose pages a resumed load commits without fetching them again); one, when the rows travel
with the page."""
_CLOSE_WAIT_SECONDS = 1.0
"""How long closing waits for the child to end by itself before terminating it."""


@dataclass
class WindowFetch(Generic[R]):
    """The pages of one load of one window still to fetch: from ``first_page``, at
    ``cursor`` (``None``: the window's first page)."""

    key: WindowKey
    load_id: str
    first_page: int
    cursor: str | None
    loaded_at: datetime
    result: R
    """Where the fetch's request figures are counted."""


@dataclass(frozen=True)
class _Job:
    """What the child needs of a :class:`WindowFetch`."""

    key: WindowKey
    load_id: str
    first_page: int
    cursor: str | None
    loaded_at: datetime


StageRows = Callable[[WindowKey, str, int, Batch, str | None], Batch]
"""Stages a page's rows where the page came in (window, load id, page number, batch, the
cursor after it), and returns the batch without them:
:meth:`resources.warehouse.WindowLoad.stage_rows`."""


@dataclass(frozen=True)
class PageInfo:
    """A page as the sync reports it: its number in the query, conversations, next cursor."""

    number: int
    conversations: int
    next_cursor: str | None


@dataclass(frozen=True)
class FedPage:
    """One page of a window, normalized; ``page`` is ``None`` after the window's last."""

    fetch: WindowFetch[Any]
    page: PageInfo | None = None
    batch: Batch | None = None


class PageFeed:
    """Pages of the windows submitted, in order, each window's pages one after another;
    fetched and normalized by ``lanes`` child processes, a window each at a time (windows go
    to the lane with the fewest waiting), or in this process (``lanes`` 0)."""

    def __init__(
        self,
        client: PolyAIClient,
        lanes: int,
        stage_rows: StageRows | None = None,
        normalizers: int | None = None,
    ) -> None:
        self.client = client
        self.lanes = lanes
        self.stage_rows = stage_rows
        self.normalizers = lanes if normalizers is None else max(1, min(normalizers, lanes))
        """Lanes that may normalize (and stage) a page at once: the cores, while every lane
        may have its request in flight."""
        self._fetches: deque[tuple[WindowFetch[Any], int, _Messages | None]] = deque()
        self._conns: list[Connection] = []
        self._children: list[multiprocessing.process.BaseProcess] = []

    def __enter__(self) -> PageFeed:
        context = multiprocessing.get_context("fork")
        if self.lanes:  # what every lane would otherwise build for itself
            self.client.pace  # noqa: B018  (one in-flight limit, shared)
            ssl_context()  # the CA bundle, ~20 ms
            import httpcore  # noqa: F401  (httpx imports it on first use, ~20 ms)
            import pyarrow.compute
            import pyarrow.ipc  # noqa: F401  (what staging uses)
        turns = context.BoundedSemaphore(max(1, self.normalizers))
        for lane in range(self.lanes):
            ours, theirs = context.Pipe()
            self._conns.append(ours)
            child = context.Process(
                target=_serve,
                args=(theirs, list(self._conns), self.client, self.stage_rows, os.getpid(), turns),
                name=f"polyai-sync pages {lane + 1}",
                daemon=True,
            )
            child.start()
            self._children.append(child)
            theirs.close()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        for _, _, local in self._fetches:
            if local is not None:
                local.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(None)
            conn.close()
        for child in self._children:
            child.join(_CLOSE_WAIT_SECONDS)
            if child.is_alive():  # in the middle of a request: not worth waiting for
                child.terminate()
                child.join()

    def submit(self, fetch: WindowFetch[Any], first: bool = False) -> None:
        """Fetch this window's pages; they are fed once those of the windows submitted before
        are, or before them (``first``: a window restarted after an error ended its pages)."""
        job = _Job(fetch.key, fetch.load_id, fetch.first_page, fetch.cursor, fetch.loaded_at)
        queue = self._fetches.appendleft if first else self._fetches.append
        if not self._conns:
            queue((fetch, 0, _pages(self.client, job, self.stage_rows)))
            return
        waiting = [0] * len(self._conns)
        for _, lane, _ in self._fetches:
            waiting[lane] += 1
        lane = waiting.index(min(waiting))
        assert not (first and waiting[lane]), "no lane is free for a window to feed first"
        self._conns[lane].send(job)
        queue((fetch, lane, None))

    def next(self) -> FedPage:
        """The next page of the windows submitted (only call it while one has pages left)."""
        fetch, lane, local = self._fetches[0]
        if local is not None:
            kind, info, payload, stats = next(local)
        else:
            conn = self._conns[lane]
            kind, info, payload, stats = conn.recv()
            while kind == "log":  # the client's log records, logged here as if here
                logging.getLogger(info.name).handle(info)
                kind, info, payload, stats = conn.recv()
            if kind == "page":
                conn.send(_TAKEN)  # the child goes on to the next page meanwhile
        fetch.result.requests.add(stats)
        if kind == "page":
            return FedPage(fetch, info, payload)
        self._fetches.popleft()
        if kind == "error":
            raise payload
        return FedPage(fetch)


_Message = tuple[str, Any, Any, RequestStats]
"""(kind: page, end, error or log; the page's :class:`PageInfo` or the log record; the batch or
the error; the request figures since the message before)."""
_Messages = Iterator[_Message]


def _pages(
    client: PolyAIClient,
    job: _Job,
    stage_rows: StageRows | None,
    turn: Turn | None = None,
) -> _Messages:
    """The window's pages, normalized (and their rows staged, with ``stage_rows``), then its
    end (or the error that ended it), each with the request figures since the one before.
    ``turn`` (the lanes share the cores) is held from parsing a page's body until its rows
    are staged: the client takes it, this gives it back, before the page is sent on (a lane
    waiting for the writer to take a page must not hold up the others)."""
    stats = RequestStats()
    key = job.key
    try:
        pages = client.iter_window(
            key.scope, key.window, stats=stats, start_cursor=job.cursor, turn=turn
        )
        with contextlib.closing(pages):
            for number, page in enumerate(pages, start=job.first_page):
                try:
                    batch = normalize_page(
                        page.conversations,
                        load_id=job.load_id,
                        loaded_at=job.loaded_at,
                        scope=key.scope,
                        channels=client.channels,
                    )
                    batch.large_value_bytes  # noqa: B018  (measured here, off the writer)
                    if stage_rows is not None:
                        batch = stage_rows(key, job.load_id, number, batch, page.next_cursor)
                finally:
                    if turn is not None:
                        turn.release()
                info = PageInfo(page.number, len(page.conversations), page.next_cursor)
                del page  # before the next is parsed
                yield "page", info, batch, _taken(stats)
                del batch
    except Exception as exc:  # raised by the sync, where the page would have come
        yield "error", None, exc, _taken(stats)
        return
    yield "end", None, None, _taken(stats)


def _taken(stats: RequestStats) -> RequestStats:
    """The figures counted so far, and ``stats`` zeroed to count on."""
    taken = RequestStats(stats.requests, stats.retries, stats.wait_seconds, dict(stats.statuses))
    stats.requests, stats.retries, stats.wait_seconds = 0, 0, 0.0
    stats.statuses.clear()
    return taken


def _serve(
    conn: Connection,
    syncs_ends: list[Connection],
    client: PolyAIClient,
    stage_rows: StageRows | None,
    sync_pid: int,
    turn: Turn,
) -> None:
    """The child: each window the sync submits, a page at a time, each once the sync took
    the one before (or up to :data:`AHEAD_PAGES` before, when it stages them itself)."""
    _die_with(sync_pid)
    for end in syncs_ends:  # forked with it: held here, a pipe would not end when the sync dies
        end.close()
    # Forked: the sync's handlers (the CLI turns SIGTERM into Ctrl-C) are not the child's.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _forward_logs(conn)
    inbox = _Inbox(conn)
    ahead = 1 if stage_rows is None else AHEAD_PAGES
    with contextlib.suppress(EOFError, OSError, KeyboardInterrupt):
        while (job := inbox.next_job()) is not None:
            for message in _pages(client, job, stage_rows, turn):
                _send(conn, message)
                if message[0] == "page" and not inbox.sent_page(ahead):
                    return  # the sync closed the feed
                del message


def _die_with(sync_pid: int) -> None:
    """Be killed when the sync's process dies (Linux), not only when a send finds its pipe
    closed: a child of a SIGKILLed sync would otherwise stage the page it was fetching, beside
    the resumed sync's own child."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != sync_pid:  # it died before that
        os._exit(0)


_PR_SET_PDEATHSIG = 1


class _Inbox:
    """What the child receives: windows to fetch (kept in order), that the sync took a page,
    or that it closed the feed."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.jobs: deque[_Job] = deque()
        self.untaken = 0
        self.closed = False

    def _receive(self) -> None:
        message = self.conn.recv()
        if message is None:
            self.closed = True
        elif message == _TAKEN:
            self.untaken -= 1
        else:
            self.jobs.append(message)

    def next_job(self) -> _Job | None:
        """The next window to fetch, once there is one; ``None`` once the feed is closed."""
        while not self.jobs and not self.closed:
            self._receive()
        return None if self.closed else self.jobs.popleft()

    def sent_page(self, ahead: int) -> bool:
        """A page was sent: wait until fewer than ``ahead`` are untaken; whether to go on."""
        self.untaken += 1
        while self.untaken >= ahead and not self.closed:
            self._receive()
        return not self.closed


class _Forward(logging.Handler):
    """Sends the child's log records (the client's retries, say) to the sync, which logs them
    where its own records go (Dagster's log, the CLI's output, a test's capture)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            record.msg, record.args = record.getMessage(), None
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            self.conn.send(("log", record, None, RequestStats()))
        except Exception:
            self.handleError(record)


def _forward_logs(conn: Connection) -> None:
    """Every record logged in the child goes to the sync, and only there."""
    for logger in logging.root.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.handlers = []
    logging.root.handlers = [_Forward(conn)]


def _send(conn: Connection, message: _Message) -> None:
    kind, info, payload, stats = message
    if kind == "error":
        try:
            pickle.loads(pickle.dumps(payload))
        except Exception as exc:  # an error that would not arrive as itself
            payload = RuntimeError(f"{type(payload).__name__}: {payload} ({exc})")
    conn.send((kind, info, payload, stats))

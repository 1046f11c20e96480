"""Files the warehouse and the lake create are readable by their owner only: they hold
conversations, which are personal data."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

OWNER_ONLY_UMASK = 0o077
_lock = threading.Lock()
_depth = 0
_saved = 0


@contextlib.contextmanager
def owner_only() -> Iterator[None]:
    """While inside, files and folders this process creates get no group or other
    permissions (0600, 0700), whatever the umask it was started with: the DuckDB file and its
    write-ahead log, the lake's files and folders. The umask is the process's, so it is set
    once for nested and concurrent users and put back when the last one leaves."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = os.umask(OWNER_ONLY_UMASK)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                os.umask(_saved)

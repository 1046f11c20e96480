"""Dagster's SQLite event log, with each database's engine kept open across events.

Dagster's ``SqliteEventLogStorage`` builds a new SQLAlchemy engine for every event it stores
and disposes of it after: it opens the file, and, since SQLAlchemy caches compiled statements
per engine, compiles every ``INSERT`` again. A backfill of 28 windows stores about 1,000
events (per window: a materialization and its planned event per asset, a check evaluation and
its planned event per check), and that cost was half of ``polyai-sync sync``'s time (profiled
with py-spy: 12.5 s of 26 s in ``handle_new_event``, mostly engine creation, connection close
and compilation).

:class:`PooledSqliteEventLogStorage` is the same storage (same files, same schema, same
locking) whose engines stay open: one per shard (the cross-run index and each run's file), at
most :data:`OPEN_SHARDS` at once, the least recently used disposed first. Only
``polyai-sync sync`` uses it (:func:`pipelines.runner.cli_instance`), when the instance keeps
Dagster's default SQLite storage; the UI, the daemon and their runs read and write the same
files with Dagster's own class.

Its connections commit with ``PRAGMA synchronous=NORMAL``: the files are in write-ahead-log mode
(Dagster sets it), where NORMAL syncs to disk at each checkpoint instead of at every commit. A
killed process loses nothing; a power loss or an operating-system crash may lose the last
events (never corrupts the file), and the run they belonged to is then marked failed by the
next sync (its process is gone), its windows resumed from the warehouse's own checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool, QueuePool

from pipelines.dagster_internals import (
    SQLITE_BUSY_TIMEOUT_SECONDS,
    ConfigurableClassData,
    SqliteEventLogStorage,
)

OPEN_SHARDS = 8
"""Engines kept open: the index and the runs a sync is executing need far fewer."""


class PooledSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose per-shard engines outlive a single event."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        self._tables: set[str] = set()
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> PooledSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # As Dagster's: one connection at a time (its lock), a transaction per use.
        with self._db_lock, self._engine(shard).connect() as conn, conn.begin():
            yield conn

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            url = self.conn_string_for_shard(shard)
            connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
            if shard not in self._initialized_dbs:
                # Dagster's creation (it opens a second connection while holding one).
                initial = create_engine(url, poolclass=NullPool, connect_args=connect_args)
                self._initdb(initial)
                initial.dispose()
                self._initialized_dbs.add(shard)
            # One connection, used under the lock by whichever thread holds it.
            engine = create_engine(
                url, poolclass=QueuePool, pool_size=1, max_overflow=0, connect_args=connect_args
            )
            event.listen(engine, "connect", _synchronous_normal)
        self._engines[shard] = engine  # the most recently used last
        while len(self._engines) > OPEN_SHARDS:
            _, oldest = self._engines.popitem(last=False)
            oldest.dispose()
        return engine

    def has_table(self, table_name: str) -> bool:
        # Dagster's builds an engine to ask, several times an event. A table once there stays.
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def _dispose_engines(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._dispose_engines()  # before the run files are deleted under them
        self._tables.clear()
        super().wipe()

    def dispose(self) -> None:
        self._dispose_engines()
        super().dispose()


def _synchronous_normal(dbapi_connection: Any, _record: Any) -> None:
    """Commits synced to disk at checkpoints, not each one (the module's docstring)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()

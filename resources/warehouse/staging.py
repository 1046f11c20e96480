"""Where a load's pages wait until the window is published: the staging of each engine.

Publishing reads a load's staged rows by the names ``_stage_<table>`` (a column ``load_id``
and the page in ``_page``), whichever staging holds them:

- :class:`Staging`, in the warehouse: tables of those names, each page inserted in the
  transaction that commits its cursor (PostgreSQL).
- :class:`FileStaging`, in Arrow IPC files beside the warehouse: a page's tables are written
  to a folder of their own, renamed into place whole, before the transaction that commits the
  page's cursor (DuckDB). A page is staged when that commit lands, as in a table: the files of
  a page whose commit did not land are never read, and are replaced when the page is fetched
  again. Each row then reaches the DuckDB file once, when the window is published, not twice
  (staged, then published), and the page's commit is a row of ``sync_state`` and the page's
  quarantined records. Publishing reads the files memory-mapped.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core import schema
from core.lazy import lazy_module
from resources.files import owner_only
from resources.warehouse.sql import PAGE_COLUMN, STAGE_PREFIX, Connection, count, quote

if TYPE_CHECKING:
    import pyarrow as pa
else:
    pa = lazy_module("pyarrow")


@functools.cache
def _schema(table: str) -> pa.Schema:
    """A staged table's Arrow schema (built on first use: pyarrow is imported lazily)."""
    return schema.arrow_schema(schema.metadata.tables[table])


class _Engine(Protocol):
    def insert(self, con: Any, table: str, rows: pa.Table, page: int | None = None) -> int: ...


class Staging:
    """Staged pages in the warehouse's staging tables, written in the page's transaction."""

    in_transaction: bool = True
    """Whether a page's rows are written inside the transaction that commits its cursor (so
    they count towards that transaction's memory)."""

    def __init__(self, engine: _Engine) -> None:
        self.engine = engine

    def stage(
        self,
        con: Connection | None,
        load_id: str,
        page: int,
        tables: Mapping[str, pa.Table],
        manifest: bytes = b"",
    ) -> None:
        """Stage one page's rows: in the transaction that commits its cursor when
        :attr:`in_transaction`, else before it (``con`` unused: any process may), with the
        ``manifest`` the page's commit is made from (:meth:`manifests`)."""
        assert con is not None, "staging tables are written in the page's transaction"
        for table, rows in tables.items():
            if rows.num_rows:
                self.engine.insert(con, STAGE_PREFIX + table, rows, page=page)

    def intact(self, load_id: str, pages: int, conversations: int) -> bool:
        """Whether the load's first ``pages`` pages, holding ``conversations`` conversations,
        are all still staged (a table's are, as they commit with the cursor)."""
        return True

    def manifests(self, load_id: str, after: int) -> Iterator[bytes]:
        """The manifests of the pages staged after page ``after`` whose commit did not land,
        in order, up to the first page missing: what a resumed load commits without
        fetching those pages again. None, when pages stage in their commit."""
        return iter(())

    @contextlib.contextmanager
    def readable(self, con: Connection, load_id: str, pages: int) -> Iterator[None]:
        """Inside, ``_stage_<table>`` on ``con`` holds the load's first ``pages`` pages."""
        yield

    def drop(self, con: Connection, load_id: str) -> None:
        """Inside the transaction that publishes or forgets the load: drop its pages."""
        for table in schema.WINDOW_TABLES:
            con.execute(
                f"DELETE FROM {quote(STAGE_PREFIX + table.name)} WHERE load_id = $load",
                {"load": load_id},
            )

    def dropped(self, load_id: str) -> None:
        """After that transaction committed: anything of the load's left outside it."""

    def sweep(self, live: set[str]) -> None:
        """Remove what loads other than ``live`` (the running and staged ones) left."""

    def holds(self, con: Connection, load_id: str, needles: Sequence[str]) -> bool:
        """Whether what the load staged holds one of ``needles`` (conversation ids, phone
        numbers as stored) anywhere: what an erasure asks of a load in progress."""
        stage = quote(STAGE_PREFIX + "conversations")
        return any(
            count(
                con,
                f"SELECT count(*) FROM {stage} WHERE load_id = $load AND "
                "(id = $v OR from_number = $v OR to_number = $v)",
                {"load": load_id, "v": needle},
            )
            for needle in needles
        )

    def rows(self, con: Connection, table: str) -> int:
        """Rows of ``table`` staged by every load (tests and the fault campaign)."""
        return count(con, f"SELECT count(*) FROM {quote(STAGE_PREFIX + table)}")


_MANIFEST = "page.json"


class FileStaging(Staging):
    """Staged pages as Arrow IPC files under ``root``: ``<load_id>/<page>/<table>.arrow``,
    and the page's manifest beside them (written in a folder named for the writing process,
    then renamed).

    A page's folder is complete once it has its final name, and it holds what the page's
    commit needs (its manifest: the cursor after it, its counts, its quarantined records).
    A page whose commit did not land is committed from its folder when the load resumes
    (:meth:`manifests`), so a process beside the writer may stage pages ahead of it and a kill
    loses none of them."""

    in_transaction = False

    def __init__(self, engine: _Engine, root: Path) -> None:
        super().__init__(engine)
        self.root = root

    def _page(self, load_id: str, page: int) -> Path:
        return self.root / load_id / f"{page:06d}"

    def stage(
        self,
        con: Connection | None,
        load_id: str,
        page: int,
        tables: Mapping[str, pa.Table],
        manifest: bytes = b"",
    ) -> None:
        final = self._page(load_id, page)
        partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
        with owner_only():
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            for table in schema.WINDOW_TABLES:
                rows = tables.get(table.name)
                if rows is None:
                    rows = schema.arrow_schema(table).empty_table()
                path = str(partial / f"{table.name}.arrow")
                with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, rows.schema) as out:
                    out.write_table(rows)
            (partial / _MANIFEST).write_bytes(manifest)
            shutil.rmtree(final, ignore_errors=True)  # the page fetched again after a kill
            partial.rename(final)

    def intact(self, load_id: str, pages: int, conversations: int) -> bool:
        try:
            staged = 0
            for page in range(1, pages + 1):
                for table in schema.WINDOW_TABLES:  # every file publishing will read
                    rows = self._read(load_id, page, table.name).num_rows
                    staged += rows if table.name == "conversations" else 0
        except (OSError, pa.ArrowInvalid):
            return False
        return staged == conversations

    def manifests(self, load_id: str, after: int) -> Iterator[bytes]:
        page = after + 1
        while True:
            try:
                manifest = (self._page(load_id, page) / _MANIFEST).read_bytes()
                for table in schema.WINDOW_TABLES:
                    self._read(load_id, page, table.name)
            except (OSError, pa.ArrowInvalid):
                return
            yield manifest
            page += 1

    def _read(self, load_id: str, page: int, table: str) -> pa.Table:
        """A staged file's rows; ``ArrowInvalid`` if it is not this version's table (a load
        an older version staged: its pages are fetched again rather than published short of
        a column)."""
        path = self._page(load_id, page) / f"{table}.arrow"
        rows = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        if not rows.schema.equals(_schema(table)):
            raise pa.ArrowInvalid(f"{path} was staged with other columns than {table}'s")
        return rows

    @contextlib.contextmanager
    def readable(self, con: Any, load_id: str, pages: int) -> Iterator[None]:
        names = []
        try:
            for table in schema.WINDOW_TABLES:
                name = STAGE_PREFIX + table.name
                con.register(name, self._staged(load_id, pages, table))
                names.append(name)
            yield
        finally:
            for name in names:
                with contextlib.suppress(Exception):  # an aborted transaction refuses it
                    con.unregister(name)

    def _staged(self, load_id: str, pages: int, table: Any) -> pa.Table:
        """The table's rows of the load's first ``pages`` pages (each row carries its
        ``load_id``) with the page they came on: the files' buffers, memory-mapped."""
        parts = []
        for page in range(1, pages + 1):
            rows = self._read(load_id, page, table.name)
            pages_column = pa.repeat(pa.scalar(page, pa.int32()), rows.num_rows)
            parts.append(rows.append_column(PAGE_COLUMN, pages_column))
        if not parts:
            empty = schema.arrow_schema(table).empty_table()
            return empty.append_column(PAGE_COLUMN, pa.array([], pa.int32()))
        return pa.concat_tables(parts, promote_options="permissive")

    def drop(self, con: Connection, load_id: str) -> None:
        pass  # the files go once the transaction has committed: :meth:`dropped`

    def dropped(self, load_id: str) -> None:
        shutil.rmtree(self.root / load_id, ignore_errors=True)

    def holds(self, con: Connection, load_id: str, needles: Sequence[str]) -> bool:
        """Every file of the load counts: pages committed, pages staged ahead of the writer,
        folders a killed worker left half-written, and the manifests (a page's quarantined
        records). Arrow IPC files hold strings uncompressed, so their bytes are searched."""
        encoded = [needle.encode() for needle in needles]
        for path in sorted((self.root / load_id).rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                if any(needle in data for needle in encoded):
                    return True
        return False

    def sweep(self, live: set[str]) -> None:
        if self.root.is_dir():
            for load in self.root.iterdir():
                if load.name not in live:
                    shutil.rmtree(load, ignore_errors=True)

    def rows(self, con: Connection, table: str) -> int:
        if not self.root.is_dir():
            return 0
        return sum(
            pa.ipc.open_file(pa.memory_map(str(path))).read_all().num_rows
            for path in self.root.glob(f"*/*/{table}.arrow")
        )

"""The Parquet lake: the window tables exported as hive-style folders, for lake engines.

    <root>/<table>/environment=<env>/channel=<channel>/date=<YYYY-MM-DD>/<window>.parquet

One file per window and table (``day.parquet`` for a daily window, ``HH00.parquet`` for an
hourly one), and the QA sample as ``.csv`` beside them. DuckDB
(``read_parquet(..., hive_partitioning = true)``), Spark and Trino prune on the folder keys.

The root is a local folder or an object store (``s3://``, ``gs://``, ``abfs://``,
``hdfs://``), both through pyarrow's filesystems, so every file is written and replaced the
same way: into a hidden temporary beside the final (``.<name>.<uuid>.tmp``: no ``*.parquet``
glob matches it, hive readers skip dot files), then moved over the final. Locally and on HDFS
the move is a rename; on S3 and GCS a server-side copy, which a reader sees whole. A reader
therefore sees the old file or the new one, never half of one, and a write that fails
(pyarrow completes an object store's upload when its stream closes, even on an error)
completes only its temporary, which is then deleted. A window's files are all written before
the first is moved, so a failure while writing leaves every one of the window's old files.

Credentials come from each store's usual environment and files (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY`` or ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_ACCOUNT_KEY``), never from the URL (:func:`core.urls.lake_url` refuses them).
The AWS SDK asks the EC2 metadata endpoint for what the environment does not give: off EC2,
where nothing may answer, that cost 8 s when the filesystem opens without a region
(``AWS_REGION`` or ``~/.aws/config``) and 4 s per request without credentials (measured
against an endpoint that never answers); ``AWS_EC2_METADATA_DISABLED=true`` skips it. GCS
requests are retried for :data:`GCS_RETRY_LIMIT_SECONDS`, not 15 minutes. The lake opens its
filesystem once, on first use.

On S3, deleting an object (the temporary, a removed file) leaves pyarrow's zero-byte folder
marker (``<folder>/``) behind; readers skip it. pyarrow's S3 move is one CopyObject request,
which S3 allows up to 5 GB: far above a window's file.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

from core import schema
from core.env import Env
from core.errors import PolyAISyncError
from core.lazy import lazy_module
from core.urls import display_url
from core.windows import Scope, Window
from resources.files import owner_only
from resources.warehouse import Warehouse

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import fs
else:
    pd = lazy_module("pandas")
    pa = lazy_module("pyarrow")
    pq = lazy_module("pyarrow.parquet")
    fs = lazy_module("pyarrow.fs")

# The folder keys hold these; the files do not repeat them.
_FOLDER_COLUMNS = ("environment", "channel")
_PARTITION_KEYS = ("environment", "channel", "date")
_DATA_EXTENSIONS = ("parquet", "csv")

GCS_RETRY_LIMIT_SECONDS = 60
"""How long a GCS request is retried: google-cloud-cpp's own 15 minutes would keep a step
waiting that long on a lake it cannot reach or authenticate to (no token: the metadata
server it then asks is retried as a transient error)."""

Writer = Callable[["pa.NativeFile"], object]
"""Writes a file's bytes to the output stream it is given."""


class LakeError(PolyAISyncError, OSError):
    """The lake's filesystem cannot be opened (an unknown scheme, HDFS without its client
    library); the message names LAKE_URL."""


class ParquetLake(ConfigurableResource):
    """A folder, local or on an object store, that receives one Parquet file per window and
    table. Paths in and out are strings in the lake's filesystem (``bucket/prefix/...`` on an
    object store, an absolute path locally), as :meth:`files` and :meth:`window_file` give
    them."""

    root: str = Field(
        description=f"{Env.LAKE_URL}: a local folder, file:///path, or s3:// gs:// abfs:// "
        "hdfs:// URL (credentials from the store's usual environment, never the URL)"
    )
    # (filesystem, root): pydantic reads the annotation at import, so no pyarrow type in it.
    _opened: tuple[Any, str] | None = PrivateAttr(default=None)

    @property
    def display(self) -> str:
        """LAKE_URL as logs and metadata show it."""
        return display_url(self.root)

    def _open(self) -> tuple[fs.FileSystem, str]:
        """The lake's filesystem and its root's path in it, opened on first use."""
        if self._opened is None:
            self._opened = open_filesystem(self.root)
        return self._opened

    def _store(self) -> fs.FileSystem:
        return self._open()[0]

    def _base(self) -> str:
        return self._open()[1]

    # --- where files go ----------------------------------------------------------------------

    def window_file(self, table: str, scope: Scope, window: Window) -> str:
        """The path of ``table``'s Parquet file for one scope's window."""
        hours = (window.end - window.start).total_seconds() / 3600
        name = "day.parquet" if hours == 24 else f"{window.start:%H%M}.parquet"
        return (
            f"{self._base()}/{table}/environment={scope.environment}/channel={scope.channel}"
            f"/date={window.start:%Y-%m-%d}/{name}"
        )

    def files(self, table: str) -> list[str]:
        """Every data file (``.parquet``, ``.csv``) of ``table``, sorted; temporaries left
        out; [] when the table has no folder."""
        selector = fs.FileSelector(f"{self._base()}/{table}", recursive=True, allow_not_found=True)
        return sorted(
            info.path
            for info in self._store().get_file_info(selector)
            if info.type == fs.FileType.File
            and info.extension in _DATA_EXTENSIONS
            and not info.base_name.startswith(".")
        )

    def stale_temporaries(self, table: str, older_than: timedelta) -> list[str]:
        """Hidden temporaries under ``table``'s folder last written more than ``older_than``
        ago: what a process killed between writing a file and moving it left (a whole copy of
        a window's file, so erasure and retention remove them)."""
        selector = fs.FileSelector(f"{self._base()}/{table}", recursive=True, allow_not_found=True)
        cutoff = datetime.now(UTC) - older_than
        return sorted(
            info.path
            for info in self._store().get_file_info(selector)
            if info.type == fs.FileType.File
            and info.base_name.startswith(".")
            and info.base_name.endswith(".tmp")
            and info.mtime is not None
            and _utc(info.mtime) < cutoff
        )

    @staticmethod
    def partition_of(path: str) -> tuple[str, str, date]:
        """(environment, channel, date) from a lake file's hive folders."""
        folders = path.split("/")[-4:-1]
        pairs = [folder.partition("=") for folder in folders]
        if [key for key, _, _ in pairs] != list(_PARTITION_KEYS):
            raise ValueError(
                f"{path!r} is not a lake file (<table>/environment=/channel=/date=/<file>)"
            )
        environment, channel, day = (value for _, _, value in pairs)
        return environment, channel, date.fromisoformat(day)

    # --- writing -----------------------------------------------------------------------------

    def export_window(self, warehouse: Warehouse, scope: Scope, window: Window) -> dict[str, int]:
        """Write the window's rows of every window table; rows written per table. Every file
        is written before the first replaces its old one."""
        written = {}
        with replacing(self._store()) as write:
            for table in schema.WINDOW_TABLES:
                rows = warehouse.window_rows(table, scope, window)
                rows = rows.drop_columns([c for c in _FOLDER_COLUMNS if c in rows.column_names])
                write(self.window_file(table.name, scope, window), _parquet(rows))
                written[table.name] = rows.num_rows
        return written

    def write_csv(self, table: str, scope: Scope, window: Window, rows: pd.DataFrame) -> str:
        """Write one window's rows of ``table`` as CSV in the window's folder, atomically; its
        path."""
        path = self.window_file(table, scope, window).removesuffix(".parquet") + ".csv"
        with replacing(self._store()) as write:
            write(path, _csv(rows))
        return path

    def write_parquet(self, path: str, rows: pa.Table) -> None:
        """Replace the Parquet file ``path`` with ``rows``, atomically (the rows as the file
        holds them: without the folder columns)."""
        with replacing(self._store()) as write:
            write(self._inside(path), _parquet(rows))

    def rewrite_csv(self, path: str, rows: pd.DataFrame) -> None:
        """Replace the CSV file ``path`` with ``rows``, atomically."""
        with replacing(self._store()) as write:
            write(self._inside(path), _csv(rows))

    def remove(self, path: str) -> None:
        """Delete the file ``path``; one already gone is no error."""
        with contextlib.suppress(FileNotFoundError):
            self._store().delete_file(self._inside(path))

    # --- reading -----------------------------------------------------------------------------

    def read_parquet(self, path: str, columns: list[str] | None = None) -> pa.Table:
        """The rows of one Parquet file (without the folder columns), or only ``columns``."""
        with self._store().open_input_file(path) as source:
            return pq.read_table(source, columns=columns)

    def read_csv(self, path: str) -> pd.DataFrame:
        """The rows of one CSV file, every cell as the text it holds (no type guessing, an
        empty cell ""), so that :meth:`rewrite_csv` of some of them writes those rows back
        exactly as they were."""
        with self._store().open_input_stream(path) as source:
            return pd.read_csv(source, dtype=str, keep_default_na=False)

    def _inside(self, path: str) -> str:
        """``path``, when it is in the lake: nothing outside the root is replaced or removed."""
        if not path.startswith(self._base() + "/") or "/../" in path or "/./" in path:
            raise ValueError(f"{path!r} is not a file in the lake {self.display!r}")
        return path


def open_filesystem(root: str) -> tuple[fs.FileSystem, str]:
    """The filesystem of LAKE_URL ``root`` and the root's path in it (without a trailing
    slash): pyarrow's for a URL, the local one for a folder (made absolute)."""
    if "://" not in root:
        return fs.LocalFileSystem(), Path(root).absolute().as_posix()
    parts = urlsplit(root)
    if parts.scheme in ("gs", "gcs") and "retry_limit_seconds" not in parts.query:
        bound = f"retry_limit_seconds={GCS_RETRY_LIMIT_SECONDS}"
        parts = parts._replace(query=f"{parts.query}&{bound}" if parts.query else bound)
    try:
        filesystem, path = fs.FileSystem.from_uri(urlunsplit(parts))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise LakeError(
            f"{Env.LAKE_URL}: cannot open {display_url(root).split('?')[0]!r}: {exc}"
        ) from exc
    return filesystem, path.rstrip("/")


@contextlib.contextmanager
def replacing(filesystem: fs.FileSystem) -> Iterator[Callable[[str, Writer], None]]:
    """Inside, ``write(path, writer)`` writes a file into a hidden temporary beside ``path``;
    when the block ends without an error each temporary is moved over its final, in the
    order written. Whatever fails, a final is its old file or its whole new one, and the
    temporaries are deleted (one left by a killed process, or whose deletion failed too, is
    hidden from readers and from :meth:`ParquetLake.files`). Local files and folders are
    readable by their owner only."""
    staged: list[tuple[str, str]] = []
    local = isinstance(filesystem, fs.LocalFileSystem)

    def write(final: str, writer: Writer) -> None:
        folder, name = final.rsplit("/", 1)
        temporary = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
        staged.append((temporary, final))
        if local:  # object stores have no folders to create
            filesystem.create_dir(folder, recursive=True)
        with filesystem.open_output_stream(temporary) as stream:
            writer(stream)

    try:
        with owner_only():
            yield write
            while staged:
                _move(filesystem, *staged[0])
                staged.pop(0)
    finally:
        for temporary, _ in staged:
            # A temporary that cannot be deleted now is invisible to readers; the error that
            # brought us here is the one to report.
            with contextlib.suppress(OSError):
                filesystem.delete_file(temporary)


def _move(filesystem: fs.FileSystem, source: str, destination: str) -> None:
    """Move ``source`` over ``destination``. Stores without a move (Azure without a
    hierarchical namespace) copy and delete, which a reader also sees whole."""
    try:
        filesystem.move(source, destination)
    except NotImplementedError:
        filesystem.copy_file(source, destination)
        filesystem.delete_file(source)


def _parquet(rows: pa.Table) -> Writer:
    return lambda stream: pq.write_table(rows, stream)


def _csv(rows: pd.DataFrame) -> Writer:
    safe = rows.apply(lambda c: c.map(_inert) if c.dtype == object or c.dtype == "str" else c)
    return lambda stream: stream.write(safe.to_csv(index=False).encode())


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _inert(value: object) -> object:
    """A text cell a spreadsheet would run as a formula (``=HYPERLINK(...)``), with a ``'``
    in front so it shows as the text it is (OWASP's advice for CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value

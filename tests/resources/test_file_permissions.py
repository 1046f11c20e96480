"""The DuckDB file (and its write-ahead log) and every lake file are created readable by their
owner only, whatever the umask the process started with."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from resources.warehouse.duckdb_engine import DuckDBWarehouse


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # the common default: files 0644, folders 0755
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("warehouse", ["duckdb"], indirect=True)
def test_the_warehouse_file_and_the_lake_are_owner_only(
    permissive_umask: None, run_sync_job, warehouse: DuckDBWarehouse, tmp_path: Path
) -> None:
    with warehouse.holding():
        warehouse.ensure_schema()
        with warehouse.connect() as con:  # a write leaves a write-ahead log while held
            con.execute("CREATE TABLE polyai.scratch AS SELECT 1 AS x")
        wal = warehouse.path.with_name(warehouse.path.name + ".wal")
        assert wal.exists() and mode(wal) == 0o600
    run_sync_job()
    assert mode(warehouse.path) == 0o600
    lake = sorted((tmp_path / "lake").rglob("*"))
    files = [p for p in lake if p.is_file()]
    folders = [p for p in lake if p.is_dir()]
    assert {p.suffix for p in files} == {".parquet", ".csv"}  # the tables and the QA sample
    assert {oct(mode(p)) for p in files} == {oct(0o600)}
    assert {oct(mode(p)) for p in folders} == {oct(0o700)}
    assert os.umask(0o022) == 0o022  # put back: only the library's own files are affected
    # Something the process writes outside the warehouse keeps the process's umask.
    other = tmp_path / "other.txt"
    other.write_text("x")
    assert mode(other) == 0o644

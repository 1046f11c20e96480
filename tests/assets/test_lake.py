"""The Parquet lake: hive folders DuckDB reads back with partition pruning, equal to the
warehouse, and replaced whole when a window is re-synced."""

from datetime import timedelta
from pathlib import Path

import duckdb

from core import schema
from resources.warehouse import Warehouse
from tests.conftest import SYNC_DAY


def lake_root(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def test_windows_land_in_hive_folders_that_read_back_equal_to_the_warehouse(
    run_sync_job, warehouse: Warehouse, tmp_path: Path
) -> None:
    run_sync_job(SYNC_DAY)
    run_sync_job(SYNC_DAY - timedelta(days=1))
    root = lake_root(tmp_path)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.parquet"))
    assert files == sorted(
        f"{table.name}/environment=live/channel=voice/date={day}/day.parquet"
        for table in schema.WINDOW_TABLES
        for day in (SYNC_DAY, SYNC_DAY - timedelta(days=1))
    )
    assert not list(root.rglob("*.tmp"))
    with duckdb.connect() as con:
        for table in schema.WINDOW_TABLES:
            key = "id" if table is schema.conversations else "conversation_id"
            lake = con.execute(
                f"SELECT environment, channel, CAST(date AS VARCHAR) AS day, count(*), "
                f"count(DISTINCT {key}) FROM read_parquet('{root}/{table.name}/**/*.parquet', "
                "hive_partitioning = true) GROUP BY ALL ORDER BY ALL"
            ).fetchall()
            stored = warehouse.read_table(table.name)
            expected = sorted(
                ("live", "voice", str(day), len(rows), rows[key].nunique())
                for day, rows in stored.groupby("conversation_date")
            )
            assert lake == expected, table.name
        # Pruning: a filter on the folder keys reads only that day's file.
        (pruned,) = con.execute(
            f"SELECT count(*) FROM read_parquet('{root}/conversations/**/*.parquet', "
            f"hive_partitioning = true) WHERE date = '{SYNC_DAY}'"
        ).fetchone()
        assert pruned == int(
            (warehouse.read_table("conversations")["conversation_date"] == SYNC_DAY).sum()
        )


def test_a_resynced_window_replaces_its_files(
    run_sync_job, warehouse: Warehouse, tmp_path: Path
) -> None:
    run_sync_job(SYNC_DAY)
    path = (
        lake_root(tmp_path)
        / f"conversations/environment=live/channel=voice/date={SYNC_DAY}/day.parquet"
    )
    first = duckdb.sql(f"SELECT DISTINCT load_id FROM '{path}'").fetchall()
    run_sync_job(SYNC_DAY)
    second = duckdb.sql(f"SELECT DISTINCT load_id FROM '{path}'").fetchall()
    assert len(first) == len(second) == 1 and first != second
    assert len(list(path.parent.iterdir())) == 1


def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(
    tmp_path: Path,
) -> None:
    import pandas as pd

    from core.windows import Scope, daily_window
    from resources.lake import ParquetLake

    rows = pd.DataFrame(
        {"transcript": ['=HYPERLINK("http://evil","x")', "+1 555", "user: hi"], "n": [1, 2, 3]}
    )
    path = ParquetLake(root=str(tmp_path)).write_csv(
        "qa_samples", Scope("live", "voice"), daily_window(SYNC_DAY), rows
    )
    written = pd.read_csv(path)
    assert written["transcript"].tolist() == [
        '\'=HYPERLINK("http://evil","x")',
        "'+1 555",
        "user: hi",
    ]
    assert written["n"].tolist() == [1, 2, 3]

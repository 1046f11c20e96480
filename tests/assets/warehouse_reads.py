"""Reads of a warehouse that another process is writing: how far its load has committed, and
every window table's rows without the columns that name the load."""

import duckdb
import psycopg

from core import schema
from core.config import duckdb_path
from resources.warehouse import warehouse_for


def committed_pages(url: str) -> int:
    """Pages the child has committed (on DuckDB, read when it lets go of the file: at least
    once a second, between two commits); -1 when it cannot be read now."""
    sql = "SELECT max(pages) FROM polyai.sync_state"
    try:
        if url.startswith("duckdb:"):
            with duckdb.connect(str(duckdb_path(url)), read_only=True) as con:
                row = con.execute(sql).fetchone()
        else:
            with psycopg.connect(url) as con:
                row = con.execute(sql).fetchone()
    except (duckdb.IOException, duckdb.CatalogException, psycopg.errors.UndefinedTable):
        return -1  # not created yet, or (DuckDB) the writer holds the lock right now
    return row[0] if row and row[0] is not None else 0


def table_contents(url: str) -> dict[str, list[tuple]]:
    """Every window table's rows, without the columns that name the load, in key order."""
    warehouse = warehouse_for(url)
    contents = {}
    with warehouse.connect(read_only=True) as con:
        for table in schema.WINDOW_TABLES:
            columns = [c.name for c in table.columns if c.name not in ("load_id", "loaded_at")]
            listed = ", ".join(f'"{c}"' for c in columns)
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            rows = con.execute(f"SELECT {listed} FROM polyai.{table.name} ORDER BY {order}")
            contents[table.name] = rows.fetchall()
    return contents

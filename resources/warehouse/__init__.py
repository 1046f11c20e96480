"""The warehouse: the tables of :mod:`core.schema` in DuckDB or PostgreSQL.

==================  ===============================================================
``resource``        the Dagster resource: address, connections, what an engine provides
``registry``        ``WAREHOUSE_URL`` → engine (:func:`warehouse_for`)
``duckdb_engine``   one file, one writer; memory room for large values
``postgres_engine`` psycopg 3, bulk load by ``COPY``
``sql``             what every window-scoped query shares, and how SQL is written here
``ddl``             create the tables, add what a newer version declares
``state``           the sync state: where each window's load stands
``load``            a window's load: begin, stage pages, publish or discard
``staging``         where staged pages wait: staging tables, or Arrow files (DuckDB)
``quarantine``      records set aside: failed validation, or held by another window
``analytics``       the analytics SQL: KPIs, window checks, the CLI's summary
``removal``         rows removed for good: erasure, retention, and their records
==================  ===============================================================

The names most callers need are importable from here.
"""

from resources.warehouse.load import PublishResult, WindowLoad, sweep_staged
from resources.warehouse.quarantine import COLLISION, Collision
from resources.warehouse.registry import warehouse_for
from resources.warehouse.resource import (
    JsonFunctions,
    Warehouse,
    WarehouseBusyError,
    WarehouseError,
    WarehouseSizeError,
)
from resources.warehouse.sql import PAGE_COLUMN, STAGE_PREFIX
from resources.warehouse.state import SyncState, WindowKey, read_state

__all__ = [
    "COLLISION",
    "PAGE_COLUMN",
    "STAGE_PREFIX",
    "Collision",
    "JsonFunctions",
    "PublishResult",
    "SyncState",
    "Warehouse",
    "WarehouseBusyError",
    "WarehouseError",
    "WarehouseSizeError",
    "WindowKey",
    "WindowLoad",
    "read_state",
    "sweep_staged",
    "warehouse_for",
]

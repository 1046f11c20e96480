"""The engines, by URL scheme: ``WAREHOUSE_URL`` picks one (:func:`warehouse_for`).

An engine is named here by its module and class, and imported only when a URL asks for it:
the engines import the resource they extend, never the other way round, and a DuckDB sync
never loads psycopg (nor a PostgreSQL one DuckDB).
"""

from __future__ import annotations

import importlib

from core.env import DEFAULTS, Env
from core.urls import display_url
from resources.warehouse.resource import Warehouse, WarehouseError

ENGINES: dict[str, str] = {
    "duckdb": "resources.warehouse.duckdb_engine:DuckDBWarehouse",
    "postgresql": "resources.warehouse.postgres_engine:PostgresWarehouse",
    "postgres": "resources.warehouse.postgres_engine:PostgresWarehouse",
}
"""URL scheme (before any ``+driver``) → ``module:class`` of its :class:`Warehouse`."""


def engine_class(url: str) -> type[Warehouse]:
    """The :class:`Warehouse` subclass for ``url``'s scheme; a clear error for any other."""
    scheme = url.split(":", 1)[0].lower().split("+")[0]
    if scheme not in ENGINES:
        raise WarehouseError(
            f"{Env.WAREHOUSE_URL} {display_url(url)!r}: unsupported engine {scheme!r}; "
            "use duckdb:///path/file.duckdb or postgresql://user@host:port/database"
        )
    module, _, name = ENGINES[scheme].partition(":")
    return getattr(importlib.import_module(module), name)


def warehouse_for(
    url: str, schema_name: str = DEFAULTS[Env.WAREHOUSE_SCHEMA], max_memory_mb: int | None = None
) -> Warehouse:
    """The warehouse ``url`` names (``duckdb:///…`` or ``postgresql://…``); ``max_memory_mb``
    is DuckDB's (``WAREHOUSE_MAX_MEMORY_MB``), which PostgreSQL does not need."""
    engine = engine_class(url)
    if "max_memory_mb" in engine.model_fields:
        return engine(url=url, schema_name=schema_name, max_memory_mb=max_memory_mb)
    return engine(url=url, schema_name=schema_name)

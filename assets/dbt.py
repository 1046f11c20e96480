"""The dbt project's models as assets (``dagster-dbt``), downstream of the tables.

The models are partitioned like the tables and grouped into runs the same way, so a sync job,
a backfill or the downstream automation builds them in the runs that land their windows: each
run builds the models with ``polyai_windows`` set to its own windows, and the KPI models
(incremental) replace exactly those windows' rows (``dbt_project/macros/windows.sql``); the
views are created again. dbt's tests are asset checks: those on the models, and those on the
tables (dbt sources), which are the tables' assets.

The KPI tables are declared with the rest of the warehouse schema (``core/schema.py``; the
warehouse creates them, with their keys) and computed only here: the SQL that defines each
KPI is the dbt model's.
"""

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    FreshnessPolicy,
    MultiPartitionsDefinition,
)
from dagster_dbt import (
    DagsterDbtCliRuntimeError,
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from assets.analytics import WHEN_TABLES_CHANGE
from assets.keys import column_schema, window_of
from core import schema
from core.names import ANALYTICS_GROUP, OWNER, POOL
from resources.dbt import (
    PROJECT_DIR,
    build_target,
    dbt_executable,
    manifest,
    profile_environment,
    windows_vars,
)
from resources.warehouse import Warehouse
from resources.warehouse.duckdb_engine import LOCK_WAIT_SECONDS


class _Translator(DagsterDbtTranslator):
    """Models and sources under ``polyai/<name>``: a source is the table's own asset (the
    sync's), a model an analytics asset brought up to date when its windows' tables change."""

    def __init__(self, freshness_policy: FreshnessPolicy | None) -> None:
        super().__init__(DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True))
        self._freshness = freshness_policy

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        return AssetKey(["polyai", dbt_resource_props["name"]])

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if manifest["nodes"].get(unique_id, {}).get("resource_type") != "model":
            return spec
        name = spec.key.path[-1]
        declared = name in schema.metadata.tables  # a KPI table: its columns are the schema's
        return spec.replace_attributes(
            group_name=ANALYTICS_GROUP,
            owners=[OWNER],
            kinds={"dbt", "sql"},
            automation_condition=WHEN_TABLES_CHANGE,
            freshness_policy=self._freshness,
            metadata={**spec.metadata, "dagster/column_schema": column_schema(name)}
            if declared
            else spec.metadata,
        )


@contextlib.contextmanager
def _quiet_unless_captured(context: AssetExecutionContext) -> Iterator[None]:
    """dagster-dbt echoes each dbt event to stdout for the step's captured output (the UI's
    raw logs). Where stdout is not captured (``polyai-sync sync`` runs steps with Dagster's
    no-op compute log manager, in the terminal) that echo would bury the command's progress:
    dropped; dbt's results are the step's events either way, and a failure's errors its
    exception."""
    if type(context.instance.compute_log_manager).__name__ != "NoOpComputeLogManager":
        yield
        return
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield


_LOCKED = "Could not set lock on file"
"""DuckDB's words when another process writes the file."""


def _waiting_for_the_file(
    context: AssetExecutionContext, build: Callable[[], Iterator[Any]]
) -> Iterator[Any]:
    """``build``'s events; started again while DuckDB refuses dbt the file because another
    process writes it (another sync on the same file: the warehouse's own connections wait for
    the lock, :data:`resources.warehouse.duckdb_engine.LOCK_WAIT_SECONDS`, and so does dbt).
    dbt takes the file before building anything, so a refused build has recorded nothing."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    delay = 0.25
    while True:
        recorded = False
        try:
            for event in build():
                recorded = True
                yield event
            return
        except DagsterDbtCliRuntimeError as exc:
            if recorded or _LOCKED not in str(exc) or time.monotonic() > deadline:
                raise
        context.log.info(f"Another process writes the warehouse file: dbt tries again in {delay} s")
        time.sleep(delay)
        delay = min(delay * 2, 4.0)


def dbt_resource() -> DbtCliResource:
    """The dbt CLI, in the project, with its own ``profiles.yml``."""
    return DbtCliResource(
        project_dir=str(PROJECT_DIR),
        profiles_dir=str(PROJECT_DIR),
        dbt_executable=dbt_executable(),
    )


def dbt_models(
    partitions_def: MultiPartitionsDefinition,
    windows_per_run: int,
    freshness_policy: FreshnessPolicy | None,
) -> AssetsDefinition:
    """Every model of the dbt project, one step that builds the run's windows."""

    @dbt_assets(
        manifest=manifest(),
        name="polyai_dbt",
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=windows_per_run),
        dagster_dbt_translator=_Translator(freshness_policy),
        pool=POOL,  # dbt writes the warehouse: on DuckDB, not while another process does
        required_resource_keys={"warehouse", "dbt"},
    )
    def polyai_dbt(context: AssetExecutionContext) -> Iterator[Any]:
        warehouse: Warehouse = context.resources.warehouse
        dbt: DbtCliResource = context.resources.dbt
        warehouse.ensure_schema()  # the KPI tables, with their keys, before dbt fills them
        windows = [
            (scope, window)
            for _, scope, window, _ in sorted(map(window_of, context.partition_keys))
        ]
        with (
            profile_environment(warehouse),
            build_target(warehouse, context.run.run_id[:8]) as target,
            _quiet_unless_captured(context),
        ):
            build = ["build", "--vars", windows_vars(windows)]
            yield from _waiting_for_the_file(
                context, lambda: dbt.cli(build, context=context, target_path=target).stream()
            )

    return polyai_dbt

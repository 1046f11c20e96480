"""The sync asset: one partition = one (day, scope) window of conversations and their turns.

Every table is written by one step because one API query yields them all; each is its own
asset so the graph and the partitions view show what exists.
"""

from collections import Counter
from datetime import datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    FreshnessPolicy,
    MetadataValue,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    multi_asset,
)

from assets.checks import CHECKS, run_checks
from assets.window_sync import DEFAULT_MAX_QUARANTINED_FRACTION, WindowSyncResult, sync_window
from core import schema
from core.windows import Scope, Window, window_from_key, window_key
from resources.polyai_api import Page, PolyAIClient
from resources.warehouse import DuckDBWarehouse

DATE_DIMENSION = "date"
SCOPE_DIMENSION = "scope"
GROUP = "polyai"
OWNER = "team:data-platform"
POOL = "polyai_sync"
"""Concurrency pool of the sync op: its limit (pipelines/dagster.yaml) bounds parallel syncs."""
CONVERSATIONS = AssetKey(["polyai", "conversations"])
TURNS = AssetKey(["polyai", "turns"])
TURN_LATENCY = AssetKey(["polyai", "turn_latency"])
TURN_GENAI = AssetKey(["polyai", "turn_genai"])

_KEYS = {key.path[-1]: key for key in (CONVERSATIONS, TURNS, TURN_LATENCY, TURN_GENAI)}
_DESCRIPTIONS = {
    CONVERSATIONS: "One row per PolyAI conversation, replaced window by window.",
    TURNS: "One row per turn, keyed by (conversation_id, turn_index).",
    TURN_LATENCY: "One row per turn and latency stage (include_latency).",
    TURN_GENAI: "One row per turn of generative-AI metadata (model, tokens, tool calls).",
}


def column_schema(table_name: str) -> TableSchema:
    """The table's columns as Dagster shows them, read from the one schema declaration."""
    table = schema.metadata.tables[table_name]
    return TableSchema(
        columns=[
            TableColumn(
                name=column.name,
                type=str(column.type),
                description=column.comment,
                constraints=TableColumnConstraints(nullable=column.nullable is not False),
            )
            for column in table.columns
        ]
    )


def build_sync_asset(
    partitions_def: MultiPartitionsDefinition,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    windows_per_run: int = 7,
    freshness_policy: FreshnessPolicy | None = None,
) -> AssetsDefinition:
    """The sync asset over the given (date x scope) partitions."""

    @multi_asset(
        name="polyai_conversations_sync",
        partitions_def=partitions_def,
        pool=POOL,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=windows_per_run),
        specs=[
            AssetSpec(
                key,
                group_name=GROUP,
                kinds={"duckdb", "python"},
                owners=[OWNER],
                skippable=True,  # materializations are reported per window, as they land
                freshness_policy=freshness_policy,
                description=text,
                metadata={"dagster/column_schema": column_schema(key.path[-1])},
            )
            for key, text in _DESCRIPTIONS.items()
        ],
        check_specs=[
            AssetCheckSpec(check.name, asset=_KEYS[check.asset], description=check.description)
            for check in CHECKS
        ],
    )
    def polyai_conversations_sync(
        context: AssetExecutionContext, polyai: PolyAIClient, warehouse: DuckDBWarehouse
    ):
        """Sync every window of the run (one, or a range when a backfill groups them)."""
        windows = sorted(_window_of(key) for key in context.partition_keys)
        violations: Counter[str] = Counter()
        failing: dict[str, list[str]] = {check.name: [] for check in CHECKS}
        for _, scope, window, key in windows:
            result = _sync_one(context, polyai, warehouse, scope, window, max_quarantined_fraction)
            metadata = _metadata(scope, window, result)
            # One materialization per window and table, as each window completes: a run that
            # fails on its fifth window still shows the first four as done.
            for asset_key in _DESCRIPTIONS:
                yield AssetMaterialization(
                    asset_key=asset_key,
                    partition=key,
                    metadata={**metadata, "dagster/row_count": result.rows[asset_key.path[-1]]},
                )
            outcomes = run_checks(
                lambda: warehouse.connect(read_only=True),
                warehouse.schema_name,
                scope,
                window,
                result.load_id,
                max_quarantined_fraction,
            )
            for outcome in outcomes:
                violations[outcome.name] += outcome.violations
                if not outcome.passed:
                    failing[outcome.name].append(key)
        for check in CHECKS:
            yield AssetCheckResult(
                check_name=check.name,
                asset_key=_KEYS[check.asset],
                passed=not failing[check.name],
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "violations": violations[check.name],
                    "windows_checked": len(windows),
                    "failing_windows": MetadataValue.json(failing[check.name]),
                },
            )

    return polyai_conversations_sync


def _window_of(key: str) -> tuple[datetime, Scope, Window, str]:
    if not isinstance(key, MultiPartitionKey):
        raise TypeError(f"expected a date|scope partition key, got {key!r}")
    dims = key.keys_by_dimension
    window = window_from_key(dims[DATE_DIMENSION])
    return window.start, Scope.parse(dims[SCOPE_DIMENSION]), window, key


def _sync_one(
    context: AssetExecutionContext,
    polyai: PolyAIClient,
    warehouse: DuckDBWarehouse,
    scope: Scope,
    window: Window,
    max_quarantined_fraction: float,
) -> WindowSyncResult:
    def log_page(page: Page) -> None:
        context.log.debug(f"page {page.number}: {len(page.conversations)} conversations")

    result = sync_window(
        polyai,
        warehouse,
        scope,
        window,
        on_page=log_page,
        log=context.log,
        max_quarantined_fraction=max_quarantined_fraction,
    )
    label = f"{scope.key} {window_key(window)}"
    context.log.info(
        f"{label}: {result.rows['conversations']} conversations, "
        f"{result.rows['turns']} turns in {result.pages} pages"
        + (f" (resumed at page {result.resumed_from_page})" if result.resumed_from_page else "")
    )
    if result.quarantined:
        context.log.warning(
            f"{label}: {result.quarantined} records quarantined (load {result.load_id})"
        )
    if result.type_issues:
        context.log.warning(
            f"{label}: values converted or nulled to fit the schema: "
            + ", ".join(f"{k} x{n}" for k, n in sorted(result.type_issues.items()))
        )
    return result


def _metadata(scope: Scope, window: Window, result: WindowSyncResult) -> dict[str, object]:
    return {
        "environment": scope.environment,
        "channel": scope.channel,
        "window_start": window.start.isoformat(),
        "window_end": window.end.isoformat(),
        "pages": result.pages,
        "resumed_from_page": result.resumed_from_page or 0,
        "api_requests": result.requests.requests,
        "api_retries": result.requests.retries,
        "api_wait_seconds": round(result.requests.wait_seconds, 3),
        "window_restarts": result.restarts,
        "quarantined_records": result.quarantined,
        "in_progress_conversations": result.in_progress,
        "type_issues": sum(result.type_issues.values()),
        "type_issue_fields": MetadataValue.json(dict(result.type_issues)),
        "load_id": result.load_id,
    }

"""The sync asset: one partition = one (day, scope) window of conversations and their turns.

Every table is written by one step because one API query yields them all; each is its own
asset so the graph and the partitions view show what exists.
"""

from collections import Counter
from collections.abc import Sequence

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Failure,
    FreshnessPolicy,
    MetadataValue,
    MultiPartitionsDefinition,
    multi_asset,
)

from assets.analytics import export_to_lake, kpi_specs, lake_spec, recompute_kpis
from assets.checks import CHECKS, run_checks
from assets.keys import (
    GROUP,
    KPI_KEYS,
    LAKE,
    OWNER,
    POOL,
    QA_SAMPLES,
    SAVED_SEARCHES,
    TABLE_DESCRIPTIONS,
    TABLE_KEYS,
    column_schema,
    window_of,
)
from assets.qa_sample import draw_sample, qa_sample_spec
from assets.saved_searches import run_saved_searches, saved_search_spec
from assets.window_sync import DEFAULT_MAX_QUARANTINED_FRACTION, WindowSyncResult, sync_window
from core.config import SavedSearch
from core.windows import Scope, Window, window_key
from resources.lake import ParquetLake
from resources.polyai_api import Page, PolyAIClient
from resources.warehouse import Warehouse


def build_sync_asset(
    partitions_def: MultiPartitionsDefinition,
    max_quarantined_fraction: float = DEFAULT_MAX_QUARANTINED_FRACTION,
    windows_per_run: int = 7,
    freshness_policy: FreshnessPolicy | None = None,
    qa_sample_size: int = 0,
    saved_searches: Sequence[SavedSearch] = (),
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
            for key, text in TABLE_DESCRIPTIONS.items()
        ]
        + kpi_specs(freshness_policy)
        + [lake_spec(freshness_policy)]
        + ([qa_sample_spec()] if qa_sample_size else [])
        + ([saved_search_spec(saved_searches)] if saved_searches else []),
        can_subset=True,
        check_specs=[
            AssetCheckSpec(check.name, asset=TABLE_KEYS[check.asset], description=check.description)
            for check in CHECKS
        ],
    )
    def polyai_conversations_sync(
        context: AssetExecutionContext,
        polyai: PolyAIClient,
        warehouse: Warehouse,
        lake: ParquetLake,
    ):
        """Sync every window of the run (one, or a range when a backfill groups them), then
        recompute its KPIs. With only KPI tables selected, recompute them without syncing."""
        windows = sorted(window_of(key) for key in context.partition_keys)
        selected = context.selected_asset_keys
        sync = bool(selected & set(TABLE_KEYS.values()))
        kpis = bool(selected & set(KPI_KEYS.values()))
        export = LAKE in selected
        sample = QA_SAMPLES in selected
        search = SAVED_SEARCHES in selected
        violations: Counter[str] = Counter()
        failing: dict[str, list[str]] = {check.name: [] for check in CHECKS}
        # One connection across the run's windows (let go every second for other
        # processes): a checkpoint a second instead of one a window.
        with warehouse.holding():
            for _, scope, window, key in windows:
                if sync:
                    try:
                        result = _sync_one(
                            context, polyai, warehouse, scope, window, max_quarantined_fraction
                        )
                    except Exception as exc:
                        # Name the window: the run's other windows did not fail, they were
                        # not reached.
                        raise Failure(
                            description=f"{key}: {exc}",
                            metadata={"window": str(key), "error_type": type(exc).__name__},
                        ) from exc
                    metadata = _metadata(scope, window, result)
                    # One materialization per window and table, as each window completes: a run
                    # that fails on its fifth window still shows the first four as done.
                    for asset_key in TABLE_DESCRIPTIONS:
                        yield AssetMaterialization(
                            asset_key=asset_key,
                            partition=key,
                            metadata={
                                **metadata,
                                "dagster/row_count": result.rows[asset_key.path[-1]],
                            },
                        )
                    outcomes = run_checks(
                        lambda: warehouse.connect(read_only=True),
                        warehouse.schema_ref,
                        scope,
                        window,
                        result.load_id,
                        max_quarantined_fraction,
                    )
                    for outcome in outcomes:
                        violations[outcome.name] += outcome.violations
                        if not outcome.passed:
                            failing[outcome.name].append(key)
                if kpis:
                    yield from recompute_kpis(warehouse, scope, window, key)
                if export:
                    yield export_to_lake(lake, warehouse, scope, window, key)
                if sample:
                    yield draw_sample(polyai, warehouse, lake, scope, window, qa_sample_size, key)
                if search:
                    yield run_saved_searches(polyai, warehouse, saved_searches, scope, window, key)
        selected_checks = {check_key.name for check_key in context.selected_asset_check_keys}
        for check in CHECKS:
            if not sync or check.name not in selected_checks:
                continue
            yield AssetCheckResult(
                check_name=check.name,
                asset_key=TABLE_KEYS[check.asset],
                passed=not failing[check.name],
                severity=AssetCheckSeverity.ERROR,
                metadata={
                    "violations": violations[check.name],
                    "windows_checked": len(windows),
                    "failing_windows": MetadataValue.json(failing[check.name]),
                },
            )

    return polyai_conversations_sync


def _sync_one(
    context: AssetExecutionContext,
    polyai: PolyAIClient,
    warehouse: Warehouse,
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

"""The sync asset: one partition = one (day, scope) window of conversations and their turns.

The four tables are written by one step because one API query yields them all (one pass over
the window's pages); each is its own asset so the graph and the partitions view show what
exists. The step cannot be subset: whatever selects one table writes, and records, all four.
Everything computed from them (KPIs, lake, QA sample, saved searches) and the window checks are
their own steps downstream (:mod:`assets.analytics`, :mod:`assets.window_checks`).
"""

import contextlib
from collections.abc import Iterator

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Failure,
    FreshnessPolicy,
    MaterializeResult,
    MetadataValue,
    MultiPartitionsDefinition,
    multi_asset,
)

from assets.keys import (
    CONVERSATIONS,
    TABLE_DESCRIPTIONS,
    column_schema,
    window_of,
)
from core.errors import PolyAISyncError
from core.names import GROUP, OWNER, POOL, SYNC_STEP, WINDOW_FAILED, WINDOW_LANDED
from core.windows import Scope, Window, window_key
from resources.api_pace import PaceReport
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse
from sync.window import WindowFailure, WindowSyncResult, sync_windows


def build_sync_asset(
    partitions_def: MultiPartitionsDefinition,
    max_quarantined_fraction: float,
    windows_per_run: int,
    freshness_policy: FreshnessPolicy | None,
    workers: int | None = None,
) -> AssetsDefinition:
    """The sync asset over the given (date x scope) partitions."""

    @multi_asset(
        name=SYNC_STEP,
        partitions_def=partitions_def,
        pool=POOL,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=windows_per_run),
        specs=[
            AssetSpec(
                key,
                group_name=GROUP,
                kinds={"duckdb", "python"},
                owners=[OWNER],
                freshness_policy=freshness_policy,
                description=text,
                metadata={"dagster/column_schema": column_schema(key.path[-1])},
            )
            for key, text in TABLE_DESCRIPTIONS.items()
        ],
        can_subset=False,
    )
    def polyai_conversations_sync(
        context: AssetExecutionContext, polyai: PolyAIClient, warehouse: Warehouse
    ):
        """Sync every window of the run (one, or a range when a backfill groups them). Each
        window's landing is recorded as it happens (an observation of the conversations
        table); the four tables' materializations, one per window with that window's
        metadata, when the step ends. A window that fails on its own (an error status, an
        invalid response or cursor, too many invalid records) is recorded as failed as it
        happens, and the others go on; the step then fails naming each, only the windows that
        landed materialized (Dagster shows the others failed). An error that concerns every
        window (the key refused, the warehouse) ends the step at once, naming its window."""
        yield from _sync_windows(context, polyai, warehouse, max_quarantined_fraction, workers)

    return polyai_conversations_sync


def _sync_windows(
    context: AssetExecutionContext,
    polyai: PolyAIClient,
    warehouse: Warehouse,
    max_quarantined_fraction: float,
    workers: int | None,
) -> Iterator[AssetObservation | AssetMaterialization | MaterializeResult]:
    landed: list[tuple[str, dict[AssetKey, dict[str, object]]]] = []
    windows = sorted(window_of(k) for k in context.partition_keys)

    pace = polyai.pace  # made here, before the fetch processes that share it
    pace.start_report()

    # One connection across the run's windows (let go every second for other processes).
    results = sync_windows(
        polyai,
        warehouse,
        [(scope, window) for _, scope, window, _ in windows],
        on_page=lambda page: context.log.debug(
            f"page {page.number}: {page.conversations} conversations"
        ),
        log=context.log,
        max_quarantined_fraction=max_quarantined_fraction,
        workers=workers,
        keep_going=True,
    )
    failed: list[tuple[str, WindowFailure]] = []
    with contextlib.closing(results):
        for _, scope, window, key in windows:
            try:
                result = next(results)
            except Exception as exc:
                yield from _materialized(landed)
                raise _failure(key, exc, failed) from exc
            if isinstance(result, WindowFailure):
                failed.append((str(key), result))
                yield _failed_observation(key, result)
                continue
            _log_result(context, scope, window, result)
            common = {**_metadata(scope, window, result), **_pace_metadata(pace.report())}
            by_table = {}
            for asset_key in TABLE_DESCRIPTIONS:
                metadata = {**common, "dagster/row_count": result.rows[asset_key.path[-1]]}
                context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=key)
                by_table[asset_key] = metadata
            landed.append((key, by_table))
            yield AssetObservation(
                asset_key=CONVERSATIONS,
                partition=key,
                metadata={
                    WINDOW_LANDED: True,
                    **common,
                    **{f"rows_{table}": count for table, count in result.rows.items()},
                },
            )
    if failed:
        yield from _materialized(landed)
        raise _windows_failed(failed, len(windows), len(landed))
    for asset_key in TABLE_DESCRIPTIONS:
        yield MaterializeResult(asset_key=asset_key)


def _failed_observation(key: str, failure: WindowFailure) -> AssetObservation:
    """A window's own failure, recorded as it happens (the CLI reports it at once)."""
    return AssetObservation(
        asset_key=CONVERSATIONS,
        partition=key,
        metadata={
            WINDOW_FAILED: failure.message,
            "error_type": type(failure.error).__name__,
            "transient": failure.resumes,
            "api_requests": failure.result.requests.requests,
        },
    )


def _windows_failed(failed: list[tuple[str, WindowFailure]], windows: int, landed: int) -> Failure:
    """The step's failure once every window was attempted: each failed one with its cause."""
    return Failure(
        description=f"{len(failed)} of {windows} window(s) failed: "
        + "; ".join(f"{key}: {failure.message}" for key, failure in failed),
        metadata={
            "windows_failed": MetadataValue.json({key: f.message for key, f in failed}),
            "windows_landed": landed,
            "transient": all(failure.resumes for _, failure in failed),
        },
    )


def _materialized(
    landed: list[tuple[str, dict[AssetKey, dict[str, object]]]],
) -> Iterator[AssetMaterialization]:
    """The landed windows' materializations, one by one (a step that fails records only
    those: Dagster shows its other windows failed)."""
    for done, by_table in landed:
        for asset_key, metadata in by_table.items():
            yield AssetMaterialization(asset_key=asset_key, partition=done, metadata=metadata)


def _failure(key: str, exc: Exception, failed: list[tuple[str, WindowFailure]]) -> Failure:
    """The step's failure for window ``key``, an error that stopped the step: named, since
    the run's windows after it were not reached; marked transient when the same command may
    succeed later. Windows that had failed on their own before it are named too."""
    earlier = "".join(f"; earlier, {done}: {failure.message}" for done, failure in failed)
    return Failure(
        description=f"{key}: {exc}{earlier}",
        metadata={
            "window": str(key),
            "error_type": type(exc).__name__,
            "transient": isinstance(exc, PolyAISyncError) and exc.transient,
        },
    )


def _log_result(
    context: AssetExecutionContext, scope: Scope, window: Window, result: WindowSyncResult
) -> None:
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


def _pace_metadata(report: PaceReport) -> dict[str, object]:
    """The requests in flight when the window landed, and since the step began: the limit
    (falls on a 429, climbs back), the most at once, and the rate."""
    return {
        "api_in_flight": report.in_flight,
        "api_in_flight_limit": report.limit,
        "api_in_flight_max": report.maximum,
        "api_in_flight_peak": report.peak,
        "api_in_flight_lowest_limit": report.lowest,
        "api_throttle_cuts": report.cuts,
        "api_requests_per_second": round(report.requests_per_second, 2),
    }


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
        "conversations_before": result.replaced,
        "window_shrank": result.shrank,
        "collisions": len(result.collisions),
        "load_id": result.load_id,
    }

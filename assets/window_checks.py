"""The window checks (:mod:`assets.checks`) as Dagster asset checks, partitioned like the tables:
each result is recorded for its window, so the UI shows which (date, scope) passed, and a check
can be executed from the UI for a chosen partition.

They are their own step, after the sync in every sync run (a backfill plans the checks of the
assets it materializes), reading the warehouse only: executed alone they never call the API.
"""

import warnings
from collections.abc import Iterable, Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    Failure,
    JobDefinition,
    MultiPartitionsDefinition,
    OpExecutionContext,
    PreviewWarning,
    job,
    multi_asset_check,
    op,
)

from assets.keys import TABLE_KEYS, window_of
from core.names import POOL, WINDOW_CHECKS
from resources.warehouse import Warehouse
from resources.warehouse.checks import CHECKS, run_checks
from resources.warehouse.state import last_load


def build_window_checks(
    partitions_def: MultiPartitionsDefinition, max_quarantined_fraction: float
) -> AssetChecksDefinition:
    with warnings.catch_warnings():
        # Partitioned checks are "preview" in Dagster 1.13; the version is pinned (uv.lock)
        # and tests/assets cover what this project relies on: results recorded per window.
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(
                check.name,
                asset=TABLE_KEYS[check.asset],
                description=check.description,
                partitions_def=partitions_def,
            )
            for check in CHECKS
        ]

    @multi_asset_check(
        name=WINDOW_CHECKS,
        specs=specs,
        can_subset=True,  # results are events, one per window; any subset can be executed
        pool=POOL,  # reads the warehouse: on DuckDB, not while another process writes it
    )
    def polyai_window_checks(context: AssetCheckExecutionContext, warehouse: Warehouse):
        if not context.op_execution_context.has_partitions:  # launched without a partition
            raise Failure(description=_NEEDS_A_PARTITION)
        yield from evaluate_windows(
            warehouse,
            context.partition_keys,
            {key.name for key in context.selected_asset_check_keys},
            max_quarantined_fraction,
        )

    return polyai_window_checks


def build_check_job(
    partitions_def: MultiPartitionsDefinition, max_quarantined_fraction: float, name: str
) -> JobDefinition:
    """The window checks as a partitioned job: the UI cannot execute a partitioned asset's
    checks on their own from the asset's Checks tab (Dagster 1.13 says "not yet supported");
    this job's launchpad can, for any partition, and so can ``dagster job launch`` or a
    backfill. Its results are recorded on the same checks, for their windows."""

    @op(name="check_windows", out={}, pool=POOL, required_resource_keys={"warehouse"})
    def check_windows(context: OpExecutionContext):
        if not context.has_partitions:
            raise Failure(description=_NEEDS_A_PARTITION)
        yield from evaluate_windows(
            context.resources.warehouse,
            context.partition_keys,
            {check.name for check in CHECKS},
            max_quarantined_fraction,
        )

    @job(
        name=name,
        partitions_def=partitions_def,
        description=(
            "Run the window checks again on chosen (date, scope) windows, reading the "
            "warehouse only."
        ),
    )
    def check_job() -> None:
        check_windows()

    return check_job


_NEEDS_A_PARTITION = (
    "The window checks check one (date, scope) window at a time: execute them for a "
    "partition (or a range of partitions)."
)


def evaluate_windows(
    warehouse: Warehouse,
    partition_keys: Iterable[str],
    selected: set[str],
    max_quarantined_fraction: float,
) -> Iterator[AssetCheckEvaluation]:
    """Every selected check on each window, as an evaluation recorded for that window (one
    connection across them)."""
    asset_of = {check.name: TABLE_KEYS[check.asset] for check in CHECKS}
    with warehouse.holding():
        for _, scope, window, key in sorted(window_of(k) for k in partition_keys):
            load = last_load(warehouse, scope, window)
            if load is None:
                results = [
                    (name, False, f"{key} was never published: nothing to check", {}, False)
                    for name in sorted(selected)
                ]
            else:
                outcomes = run_checks(warehouse, scope, window, load, max_quarantined_fraction)
                results = [
                    (
                        o.name,
                        o.passed,
                        f"{key}: " + ("passed" if o.passed else f"{o.violations} {o.explanation}"),
                        {"violations": o.violations, "load_id": load},
                        o.warn_only,
                    )
                    for o in outcomes
                    if o.name in selected
                ]
            for name, passed, description, metadata, warn_only in results:
                yield AssetCheckEvaluation(
                    asset_key=asset_of[name],
                    check_name=name,
                    passed=passed,
                    severity=AssetCheckSeverity.WARN if warn_only else AssetCheckSeverity.ERROR,
                    description=description,
                    metadata=metadata,
                    partition=key,
                )

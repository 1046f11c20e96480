"""Dagster's own cost for a backfill of this project's job: the same assets, checks, partitions,
backfill policy and executor as :mod:`pipelines.definitions`, every step doing nothing but
recording what the real step records (per window: an observation when it lands, a
materialization of each table, KPI table and the lake, an evaluation of each window check),
driven the way ``polyai-sync sync`` drives it (:func:`pipelines.runner.run_backfill`, runs
executed in the driving process).

No request, no warehouse: what remains is importing Dagster, opening the instance, creating the
runs (with their planned events), executing the steps and storing the events. The backfill
benchmark times it beside the real command (``--scenario backfill``): no sync through Dagster
can be faster than this, however fast its own work.
"""

import os
from collections.abc import Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetObservation,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Definitions,
    MaterializeResult,
    MultiPartitionsDefinition,
    multi_asset,
    multi_asset_check,
)

from assets.keys import KPI_KEYS, LAKE, TABLE_KEYS
from core.config import Settings
from core.names import POOL, SYNC_STEP, WINDOW_CHECKS, WINDOW_LANDED
from pipelines.partitions import build_partitions
from pipelines.run_workers import run_worker_executor
from resources.warehouse.checks import CHECKS

MODULE = __name__
"""What :func:`pipelines.runner.code_location` loads instead of the project's definitions."""


def _sync_step(partitions: MultiPartitionsDefinition, per_run: int) -> AssetsDefinition:
    @multi_asset(
        name=SYNC_STEP,
        specs=[AssetSpec(key) for key in TABLE_KEYS.values()],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=per_run),
        pool=POOL,
        can_subset=False,
    )
    def sync(context: AssetExecutionContext) -> Iterator[AssetObservation | MaterializeResult]:
        for key in context.partition_keys:
            yield AssetObservation(
                asset_key=TABLE_KEYS["conversations"],
                partition=key,
                metadata={WINDOW_LANDED: True},
            )
        for asset_key in TABLE_KEYS.values():
            yield MaterializeResult(asset_key=asset_key)

    return sync


def _computed(
    key_name: str, partitions: MultiPartitionsDefinition, per_run: int
) -> AssetsDefinition:
    key = KPI_KEYS.get(key_name, LAKE)

    @multi_asset(
        name=key.path[-1],
        specs=[AssetSpec(key, deps=list(TABLE_KEYS.values()))],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=per_run),
        pool=POOL,
    )
    def computed() -> MaterializeResult:
        return MaterializeResult(asset_key=key)

    return computed


def build_floor_definitions(settings: Settings) -> Definitions:
    partitions = build_partitions(settings)
    per_run = settings.windows_per_run
    specs = [
        AssetCheckSpec(check.name, asset=TABLE_KEYS[check.asset], partitions_def=partitions)
        for check in CHECKS
    ]

    @multi_asset_check(name=WINDOW_CHECKS, specs=specs, can_subset=True, pool=POOL)
    def checks(context: AssetCheckExecutionContext) -> Iterator[AssetCheckEvaluation]:
        for key in context.partition_keys:
            for spec in specs:
                yield AssetCheckEvaluation(
                    asset_key=spec.asset_key, check_name=spec.name, passed=True, partition=key
                )

    return Definitions(
        assets=[
            _sync_step(partitions, per_run),
            *(_computed(name, partitions, per_run) for name in [*KPI_KEYS, "lake"]),
        ],
        asset_checks=[checks],
        executor=run_worker_executor,
    )


defs = build_floor_definitions(Settings.from_env(os.environ))

"""The Dagster code location: ``dagster dev -w workspace.yaml`` loads ``defs`` from here.

Non-secret settings are read once from the environment (:class:`core.config.Settings`); the
source's identity and key are bound as ``EnvVar`` so the UI shows the variable's name, never
its value, and a run without them fails naming the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dagster import (
    AssetsDefinition,
    AssetSelection,
    AutomationConditionSensorDefinition,
    ConfigurableResource,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    Definitions,
    EnvVar,
    FreshnessPolicy,
    MultiPartitionsDefinition,
    ScheduleDefinition,
    define_asset_job,
)

from assets.analytics import lake_asset
from assets.conversations import build_sync_asset
from assets.freshness import SYNC_STATE_SPEC, build_freshness_check
from assets.qa_sample import qa_sample_asset
from assets.retention import retention_asset
from assets.saved_searches import saved_search_asset
from assets.window_checks import build_check_job, build_window_checks
from core.config import Settings
from core.env import Env
from core.names import CHECK_JOB, DOWNSTREAM_SENSOR, FRESHNESS_JOB, RETENTION_JOB, SYNC_JOB
from core.urls import display_url
from pipelines.alerts import AlertWebhook, build_alert_sensor
from pipelines.partitions import build_partitions
from pipelines.run_workers import run_worker_executor
from pipelines.schedules import build_nightly_schedule
from resources.lake import ParquetLake
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse, warehouse_for

# One freshness policy for every table, decided here: the nightly run lands yesterday a few
# hours after the schedule hour, so a table last materialized more than a day and a half ago
# is late. (Applied through the asset factory: Definitions.map_asset_specs is still preview.)
FRESHNESS = FreshnessPolicy.time_window(
    warn_window=timedelta(hours=26), fail_window=timedelta(hours=36)
)


def build_definitions(settings: Settings) -> Definitions:
    partitions = build_partitions(settings)
    per_run = settings.windows_per_run
    sync_asset = build_sync_asset(
        partitions, settings.quarantine_max_fraction, per_run, FRESHNESS, settings.sync_workers
    )
    downstream = _downstream_assets(partitions, settings)
    window_checks = build_window_checks(partitions, settings.quarantine_max_fraction)
    sync_job = define_asset_job(
        SYNC_JOB,
        selection=AssetSelection.assets(sync_asset, *downstream)
        | AssetSelection.checks(window_checks),
        description=(
            "Sync (date, scope) windows of PolyAI conversations into the warehouse, check "
            "them, then recompute what is computed from them: KPIs, lake, QA sample, saved "
            "searches."
        ),
    )
    check_job = build_check_job(partitions, settings.quarantine_max_fraction, CHECK_JOB)
    freshness_check = build_freshness_check(settings.scopes, settings.schedule_hour)
    retention = _retention(settings)
    freshness_job = define_asset_job(
        FRESHNESS_JOB,
        selection=AssetSelection.checks(freshness_check),
        description="Check that every scope has published the window it should have by now.",
    )
    return Definitions(
        assets=[sync_asset, *downstream, SYNC_STATE_SPEC, *retention.assets],
        asset_checks=[window_checks, freshness_check],
        jobs=[sync_job, check_job, freshness_job, *retention.jobs],
        schedules=[
            build_nightly_schedule(sync_job, settings),
            ScheduleDefinition(
                name=FRESHNESS_JOB,
                job=freshness_job,
                cron_schedule="15 * * * *",
                execution_timezone="UTC",
                default_status=DefaultScheduleStatus.RUNNING,
            ),
            *retention.schedules,
        ],
        sensors=[
            _downstream_sensor(downstream, settings.automation_interval_seconds),
            # Failure alerts, when POLYAI_ALERT_WEBHOOK_URL is set (pipelines/alerts.py).
            *(
                [build_alert_sensor(partitions, settings.dagster_ui_url)]
                if settings.alert_webhook_url
                else []
            ),
        ],
        # Every step in the run's own process, the run tagged with that process, so a run whose
        # process is gone can be told from a live one (pipelines/run_workers.py).
        executor=run_worker_executor,
        resources=_resources(settings),
    )


@dataclass(frozen=True)
class _Parts:
    assets: list[AssetsDefinition] = field(default_factory=list)
    jobs: list[Any] = field(default_factory=list)  # what define_asset_job returns
    schedules: list[ScheduleDefinition] = field(default_factory=list)


def _retention(settings: Settings) -> _Parts:
    """With POLYAI_RETENTION_DAYS set: the retention asset, its job, and its nightly schedule
    (half an hour after the sync's: they touch different windows, and wait for each other's
    writes on DuckDB)."""
    if not settings.retention_days:
        return _Parts()
    asset = retention_asset(settings.retention_days)
    job = define_asset_job(
        RETENTION_JOB,
        selection=AssetSelection.assets(asset),
        description=(
            f"Remove the windows older than {settings.retention_days} days from every table "
            "and the lake, and record what was removed."
        ),
    )
    schedule = ScheduleDefinition(
        name=RETENTION_JOB,
        job=job,
        cron_schedule=f"30 {settings.schedule_hour} * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
    )
    return _Parts([asset], [job], [schedule])


def _downstream_assets(
    partitions: MultiPartitionsDefinition, settings: Settings
) -> list[AssetsDefinition]:
    """What is computed from the synced tables: the dbt models (the KPIs among them, unless
    turned off) and the lake, the QA sample and the saved searches when configured."""
    per_run = settings.windows_per_run
    return [
        *_dbt_models(partitions, settings),
        lake_asset(partitions, per_run, FRESHNESS),
        *(
            [qa_sample_asset(partitions, per_run, settings.qa_sample_size)]
            if settings.qa_sample_size
            else []
        ),
        *(
            [saved_search_asset(partitions, per_run, settings.saved_searches)]
            if settings.saved_searches
            else []
        ),
    ]


def _dbt_models(
    partitions: MultiPartitionsDefinition, settings: Settings
) -> list[AssetsDefinition]:
    """The dbt project's models, unless POLYAI_DBT_MODELS is off (then dagster-dbt, 2.4 s to
    import, is not imported either)."""
    if not settings.dbt_models:
        return []
    from assets.dbt import dbt_models

    return [dbt_models(partitions, settings.windows_per_run, FRESHNESS)]


def _downstream_sensor(
    downstream: list[AssetsDefinition], interval_seconds: int
) -> AutomationConditionSensorDefinition:
    """Under the daemon: when only the tables of some windows were materialized, bring those
    windows' KPIs, lake, sample and searches up to date (their automation condition,
    assets/analytics.py), evaluated every POLYAI_AUTOMATION_INTERVAL_SECONDS."""
    return AutomationConditionSensorDefinition(
        DOWNSTREAM_SENSOR,
        target=AssetSelection.assets(*downstream),
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
    )


def _resources(settings: Settings) -> dict[str, ConfigurableResource]:
    return {
        "polyai": PolyAIClient(
            # From POLYAI_BASE_URL or POLYAI_REGION; when neither is set, a run fails
            # naming the variable.
            base_url=settings.base_url or EnvVar(Env.POLYAI_BASE_URL),
            api_key=EnvVar(Env.POLYAI_API_KEY),
            account_id=EnvVar(Env.POLYAI_ACCOUNT_ID),
            project_id=EnvVar(Env.POLYAI_PROJECT_ID),
            page_size=settings.page_size,
            max_in_flight=settings.max_in_flight,
            max_attempts=settings.max_attempts,
            request_deadline_seconds=settings.request_deadline_seconds,
            request_budget_seconds=settings.request_budget_seconds,
            allow_insecure_http=settings.allow_insecure_http,
            hash_phone_numbers=settings.hash_phone_numbers,
            # Bound by name, so the UI and run config show the variable, not the salt.
            phone_hash_salt=EnvVar(Env.POLYAI_PHONE_HASH_SALT)
            if settings.hash_phone_numbers
            else "",
            redact_transcripts=settings.redact_transcripts,
            channel_map=settings.channel_map.setting,
            channel_filter=settings.channel_map.filter_mode,
        ),
        "lake": ParquetLake(root=settings.lake_url),
        **({"dbt": _dbt_resource()} if settings.dbt_models else {}),
        "warehouse": _warehouse(settings),
        # Bound by name: the UI shows the variable, never the URL (its path is the secret).
        **(
            {"alert_webhook": AlertWebhook(url=EnvVar(Env.POLYAI_ALERT_WEBHOOK_URL))}
            if settings.alert_webhook_url
            else {}
        ),
    }


def _dbt_resource() -> ConfigurableResource:
    from assets.dbt import dbt_resource

    return dbt_resource()


def _warehouse(settings: Settings) -> Warehouse:
    """The warehouse resource. A URL that carries a password is bound as ``EnvVar`` (the UI
    and the run config then show the variable's name, never the password)."""
    warehouse = warehouse_for(
        settings.warehouse_url, settings.warehouse_schema, settings.warehouse_max_memory_mb
    )
    if display_url(settings.warehouse_url) != settings.warehouse_url:
        return type(warehouse)(url=EnvVar(Env.WAREHOUSE_URL), schema_name=settings.warehouse_schema)
    return warehouse


defs = build_definitions(Settings.from_env(os.environ))

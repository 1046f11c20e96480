"""The nightly schedule's run requests for a given evening, lookback included."""

from datetime import UTC, date, datetime, timedelta

from dagster import build_schedule_context

from core.config import Settings
from core.windows import Scope, daily_window
from pipelines.definitions import build_definitions
from pipelines.schedules import NIGHTLY
from resources.warehouse.duckdb_engine import DuckDBWarehouse
from sync.window import sync_window
from tests.conftest import Serve, client_for

TODAY = date(2026, 11, 23)


def test_nightly_requests_yesterday_the_lookback_and_windows_left_in_progress(
    serve: Serve, warehouse: DuckDBWarehouse
) -> None:
    # A window synced while the day was still going on: it held in-progress conversations.
    unfinished_day = date(2026, 11, 12)
    server = serve(now=datetime(2026, 11, 12, 15, tzinfo=UTC), conversations_per_day=2000)
    result = sync_window(
        client_for(server), warehouse, Scope("live", "voice"), daily_window(unfinished_day)
    )
    assert result.in_progress > 0

    settings = Settings.from_env(
        {
            "POLYAI_SYNC_START": "2026-11-01",
            "WAREHOUSE_URL": warehouse.url,
            "POLYAI_LOOKBACK_DAYS": "2",
        }
    )
    schedule = build_definitions(settings).resolve_schedule_def(NIGHTLY)
    assert schedule.cron_schedule == "0 2 * * *"
    # A context is closed (``with``): its resources are built in an ephemeral Dagster instance
    # that stays open otherwise, and DuckDB's bindings report leaks at interpreter exit.
    with build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 2, tzinfo=UTC),
        resources={"warehouse": warehouse},
    ) as context:
        requests = list(schedule(context))
    keys = sorted(r.partition_key for r in requests)
    days = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
    expected = [f"{unfinished_day}|live.voice"] + [
        f"{d}|live.{c}" for d in days for c in ("chat", "voice")
    ]
    assert keys == sorted(expected)
    assert len({r.run_key for r in requests}) == len(requests)


def test_nightly_on_an_empty_warehouse_requests_only_recent_windows(tmp_path) -> None:
    settings = Settings.from_env(
        {"WAREHOUSE_URL": f"duckdb:///{tmp_path / 'none.duckdb'}", "POLYAI_LOOKBACK_DAYS": "0",
         "POLYAI_SCHEDULE_HOUR": "5"}
    )  # fmt: skip
    schedule = build_definitions(settings).resolve_schedule_def(NIGHTLY)
    assert schedule.cron_schedule == "0 5 * * *"
    with build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 5, tzinfo=UTC),
        resources={"warehouse": DuckDBWarehouse(url=settings.warehouse_url)},
    ) as context:
        keys = sorted(r.partition_key for r in schedule(context))
    assert keys == ["2026-11-22|live.chat", "2026-11-22|live.voice"]


def test_nightly_with_hourly_windows_requests_every_hour(tmp_path) -> None:
    settings = Settings.from_env(
        {"WAREHOUSE_URL": f"duckdb:///{tmp_path / 'none.duckdb'}", "POLYAI_LOOKBACK_DAYS": "0",
         "POLYAI_WINDOW": "hourly", "POLYAI_CHANNELS": "voice"}
    )  # fmt: skip
    schedule = build_definitions(settings).resolve_schedule_def(NIGHTLY)
    with build_schedule_context(
        scheduled_execution_time=datetime(2026, 11, 23, 2, tzinfo=UTC),
        resources={"warehouse": DuckDBWarehouse(url=settings.warehouse_url)},
    ) as context:
        keys = sorted(r.partition_key for r in schedule(context))
    assert keys == [f"2026-11-22-{h:02d}:00|live.voice" for h in range(24)]

"""The per-scope freshness check flags the scope that fell behind, and only that one."""

from datetime import UTC, datetime, timedelta

from dagster import DagsterInstance

from core.config import Settings
from core.names import FRESHNESS_JOB
from core.windows import Scope, daily_window, expected_newest_day
from pipelines.definitions import build_definitions
from resources.warehouse import Warehouse
from sync.window import sync_window
from tests.conftest import Serve, client_for


def test_expected_newest_day_waits_for_the_nightly_run_to_finish() -> None:
    before = datetime(2026, 11, 23, 7, 59, tzinfo=UTC)
    after = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    assert str(expected_newest_day(before, schedule_hour=2)) == "2026-11-21"
    assert str(expected_newest_day(after, schedule_hour=2)) == "2026-11-22"


def run_check(warehouse: Warehouse):
    settings = Settings.from_env(
        {"WAREHOUSE_URL": warehouse.url, "POLYAI_SYNC_START": "2026-01-01"}
    )
    job = build_definitions(settings).resolve_job_def(FRESHNESS_JOB)
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_a_scope_behind_the_nightly_run_fails_the_check(serve: Serve, warehouse: Warehouse) -> None:
    server = serve(now=None, conversations_per_day=20)
    expected = expected_newest_day(datetime.now(UTC), schedule_hour=2)
    client = client_for(server)
    sync_window(client, warehouse, Scope("live", "voice"), daily_window(expected))
    sync_window(
        client, warehouse, Scope("live", "chat"), daily_window(expected - timedelta(days=3))
    )
    evaluation = run_check(warehouse)
    assert not evaluation.passed
    assert evaluation.metadata["late_scopes"].value == 1
    assert "live.chat" in evaluation.description and "live.voice" not in evaluation.description

    sync_window(client, warehouse, Scope("live", "chat"), daily_window(expected))
    assert run_check(warehouse).passed


def test_an_empty_warehouse_has_every_scope_late(warehouse: Warehouse) -> None:
    evaluation = run_check(warehouse)
    assert not evaluation.passed
    assert evaluation.metadata["late_scopes"].value == 2

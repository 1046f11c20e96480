"""A window that fails fails alone, and recovers exactly, through the real CLI against the hostile
API: the other windows of its run land, the failed one is named with its own cause (in the
command's output and in Dagster), and the next sync of a fixed source fetches it afresh."""

from collections import Counter
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus

from tests.hostile.harness import Deployment
from tests.hostile.server import Query, Reply, conversation, json_reply

pytestmark = pytest.mark.e2e

D1, D2 = "2026-01-04", "2026-01-05"
SCOPES = [(env, channel) for env in ("live", "sandbox") for channel in ("voice", "chat")]


def _records(environment: str, channel: str, day: str, n: int, label: str = "") -> list[Any]:
    return [
        conversation(
            f"{environment}-{channel}-{day}-{i}",
            f"{day}T0{i}:00:00Z",
            environment=environment,
            channel=label or channel,
        )
        for i in range(n)
    ]


def _partition_status(deployment: Deployment, asset: AssetKey) -> dict[str, str]:
    """What Dagster says of each partition of ``asset``: materialized, or failed (its last
    planned materialization in a run that failed, with no materialization since)."""
    with DagsterInstance.from_config(str(deployment.dagster_home)) as instance:
        status = {key: "materialized" for key in instance.get_materialized_partitions(asset)}
        storage = instance.event_log_storage
        unmaterialized = (
            "get_latest_asset_partition_materialization_attempts_without_materializations"
        )
        for key, (run_id, _) in getattr(storage, unmaterialized)(asset).items():
            run = instance.get_run_by_id(run_id)
            if run is not None and run.status == DagsterRunStatus.FAILURE:
                status[key] = "failed"
    return status


def test_a_poisoned_scope_fails_its_windows_alone_and_the_run_lands_the_rest(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    for environment, channel in SCOPES:
        for day in (D1, D2):
            # sandbox.chat's records carry a label no channel has: every one is invalid.
            label = "sms" if (environment, channel) == ("sandbox", "chat") else ""
            api.put(environment, channel, day, _records(environment, channel, day, 3, label))

    done = deployment.sync(D1, D2, POLYAI_ENVIRONMENTS="live,sandbox", POLYAI_DBT_MODELS="1")

    assert done.returncode == 1, done.stdout + done.stderr
    failed = [line for line in done.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 2, done.stdout
    by_day = sorted(failed, key=lambda line: line.split("]")[1])
    for day, line in zip((D1, D2), by_day, strict=True):
        assert f"{day} sandbox.chat: FAILED: " in line
        assert "3 of 3 records failed validation" in line
        assert "a re-run fetches the window again from its first page" in line
    assert "its run stopped at" not in done.stdout + done.stderr
    assert "6 of 8 window(s) synced, 2 failed" in done.stdout
    expected = sorted(
        f"{env}-{channel}-{day}-{i}"
        for env, channel in SCOPES
        if (env, channel) != ("sandbox", "chat")
        for day in (D1, D2)
        for i in range(3)
    )
    assert deployment.ids() == expected

    status = _partition_status(deployment, AssetKey(["polyai", "conversations"]))
    assert Counter(status.values()) == {"materialized": 6, "failed": 2}
    assert {key for key, s in status.items() if s == "failed"} == {
        f"{D1}|sandbox.chat",
        f"{D2}|sandbox.chat",
    }
    states = {
        (row["environment"], row["channel"], str(row["window_start"])[:10]): row
        for row in deployment.rows("sync_state")
    }
    poisoned = states["sandbox", "chat", D1]
    assert poisoned["status"] == "failed" and "failed validation" in poisoned["error"]
    assert poisoned["cursor"] is None and poisoned["pages"] == 0
    # The landed windows' KPIs and lake, which their failed runs skipped, computed after.
    assert "Computing the KPIs and lake of the 6 window(s)" in done.stdout
    kpis = _partition_status(deployment, AssetKey(["polyai", "conversation_kpis"]))
    assert kpis == status  # the 6 landed computed; the 2 failed, as their tables
    in_lake = {str(path).split("date=")[1][:10] for path in deployment.lake.rglob("*.parquet")}
    assert in_lake == {D1, D2}
    assert not list(deployment.lake.rglob("*environment=sandbox/channel=chat*"))
    deployment.assert_no_secret(done)


def test_a_window_over_the_quarantine_threshold_is_fetched_afresh_once_the_source_is_fixed(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    good = _records("live", "voice", D1, 5)
    api.put("live", "voice", D1, good[:2] + _records("live", "voice", D1, 3, label="sms"))

    refused = deployment.sync(D1, None, "--channel", "voice")
    assert refused.returncode == 1 and "3 of 5 records failed validation" in refused.stdout
    assert deployment.ids() == []
    asked = len(api.requests)

    api.put("live", "voice", D1, good)  # the source, fixed
    fixed = deployment.sync(D1, None, "--channel", "voice")

    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert len(api.requests) > asked  # fetched again, not the old staged load republished
    assert deployment.ids() == sorted(r["id"] for r in good)
    (state,) = deployment.rows("sync_state")
    assert state["status"] == "complete" and state["error"] is None


def test_an_endless_cursor_then_a_healthy_api_lands_every_conversation(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    records = _records("live", "voice", D1, 8)
    api.put("live", "voice", D1, records)

    def endless(query: Query) -> Reply | None:
        # The same two conversations, and a new cursor, forever.
        cursor = query.get("cursor", ["e0"])[0]
        return json_reply({"conversations": records[:2], "cursor": f"e{int(cursor[1:]) + 1}"})

    api.override = endless
    stuck = deployment.sync(D1, None, "--channel", "voice", POLYAI_PAGE_SIZE="2")
    assert stuck.returncode == 1
    assert "brought no conversation not seen earlier" in stuck.stdout
    (state,) = deployment.rows("sync_state")
    assert state["status"] == "failed" and state["cursor"] is None  # nothing of it kept

    api.override = None
    asked = len(api.requests)
    healthy = deployment.sync(D1, None, "--channel", "voice", POLYAI_PAGE_SIZE="2")

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "cursor" not in api.requests[asked]  # the window fetched from its first page
    assert deployment.ids() == sorted(r["id"] for r in records)


def test_in_progress_conversations_with_turns_null_land_counted_as_in_progress(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    finished = _records("live", "voice", D1, 5)
    ongoing = [
        conversation(f"ongoing-{i}", f"{D1}T1{i}:00:00Z", turns=0)
        | {"turns": None, "num_turns": 0, "in_progress": True, "latency": None}
        for i in range(3)
    ]
    api.put("live", "voice", D1, finished + ongoing)

    done = deployment.sync(D1, None, "--channel", "voice")

    assert done.returncode == 0, done.stdout + done.stderr
    assert deployment.ids() == sorted(r["id"] for r in finished + ongoing)
    assert deployment.rows("quarantine") == []
    in_progress = deployment.ids("in_progress")
    assert in_progress == ["ongoing-0", "ongoing-1", "ongoing-2"]
    (state,) = deployment.rows("sync_state")
    assert state["in_progress"] == 3
    assert not deployment.rows("turns", "conversation_id LIKE 'ongoing-%'")

    # They finish; the next sync of the window (the nightly lookback's) brings their turns.
    done_now = [conversation(f"ongoing-{i}", f"{D1}T1{i}:00:00Z", turns=2) for i in range(3)]
    api.put("live", "voice", D1, finished + done_now)
    again = deployment.sync(D1, None, "--channel", "voice")
    assert again.returncode == 0, again.stdout + again.stderr
    assert deployment.ids("in_progress") == []
    assert len(deployment.rows("turns", "conversation_id LIKE 'ongoing-%'")) == 6


def test_a_nightly_tick_with_one_poisoned_scope_lands_the_other_three(
    duckdb_deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    from dagster import DagsterInstance, build_schedule_context

    from core.config import Settings
    from core.names import SYNC_JOB
    from pipelines.definitions import build_definitions
    from pipelines.schedules import NIGHTLY
    from resources.warehouse.duckdb_engine import DuckDBWarehouse

    deployment, api = duckdb_deployment, duckdb_deployment.api
    for environment, channel in SCOPES:
        label = "sms" if (environment, channel) == ("sandbox", "chat") else ""
        api.put(environment, channel, D2, _records(environment, channel, D2, 3, label))
    env = deployment.env(POLYAI_ENVIRONMENTS="live,sandbox", POLYAI_LOOKBACK_DAYS="0")
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the resources' EnvVars are read at run time
    definitions = build_definitions(Settings.from_env(env))
    schedule = definitions.resolve_schedule_def(NIGHTLY)
    with build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 6, 2, tzinfo=UTC),
        resources={"warehouse": DuckDBWarehouse(url=deployment.warehouse_url)},
    ) as context:
        requests = list(schedule(context))
    assert sorted(r.partition_key for r in requests) == sorted(
        f"{D2}|{env}.{channel}" for env, channel in SCOPES
    )

    job = definitions.resolve_job_def(SYNC_JOB)
    with DagsterInstance.ephemeral() as instance:
        outcomes = {
            request.partition_key: job.execute_in_process(
                partition_key=request.partition_key, instance=instance, raise_on_error=False
            ).success
            for request in requests
        }
    assert outcomes == {
        f"{D2}|{env}.{channel}": (env, channel) != ("sandbox", "chat") for env, channel in SCOPES
    }
    assert len(deployment.ids()) == 9  # 3 scopes x 3 conversations


def test_a_refused_key_stops_the_run_at_once_and_says_so_once(
    duckdb_deployment: Deployment,
) -> None:
    deployment, api = duckdb_deployment, duckdb_deployment.api
    api.override = lambda query: json_reply({"detail": "Invalid API key"}, 401)

    done = deployment.sync(D1, None, POLYAI_ENVIRONMENTS="live,sandbox")

    assert done.returncode == 1, done.stdout + done.stderr
    summary = [line for line in done.stderr.splitlines() if line.startswith("  ")]
    refused = [line for line in summary if "401" in line]
    assert len(refused) == 1 and "POLYAI_API_KEY" in refused[0]  # the cause, once
    (unreached,) = [line for line in summary if "not synced" in line]
    assert unreached.startswith("  3 window(s) not synced: its run stopped at ")
    assert len(api.requests) <= 4  # a 401 is not retried: one request a window at most
    deployment.assert_no_secret(done)

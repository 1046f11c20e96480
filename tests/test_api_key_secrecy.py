"""The API key never reaches a log line, an error, a repr, Dagster metadata or the event log.

A sync runs through Dagster with retries (so warnings are logged) and once with a refused key
(so errors are raised); everything written anywhere is captured and searched for the key.
"""

import logging
from pathlib import Path

import pytest
from dagster import DagsterInstance

from core.config import Settings
from core.names import SYNC_JOB
from core.windows import Scope
from pipelines.definitions import build_definitions
from pipelines.partitions import partition_key
from resources.warehouse import Warehouse
from tests.conftest import SYNC_DAY, Serve, everything_stored

GOOD_KEY = "sk-live-GOODSECRET-7f3a9c"
WRONG_KEY = "sk-live-WRONGSECRET-0d1e2f"


def run_sync(serve: Serve, warehouse: Warehouse, warehouse_dir: Path, monkeypatch, key: str):
    server = serve(
        api_key=GOOD_KEY,
        conversations_per_day=2500,
        faults={"rate_429": 0.3, "truncate_rate": 0.2, "seed": 4},
    )
    for name, value in server.source_variables().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POLYAI_API_KEY", key)
    settings = Settings.from_env(
        {
            "POLYAI_SYNC_START": "2026-11-01",
            "WAREHOUSE_URL": warehouse.url,
            "LAKE_URL": str(warehouse_dir / "lake"),
        }
    )
    defs = build_definitions(settings)
    # Disposed on exit: an ephemeral instance left open holds its in-memory SQLite storage
    # until interpreter exit, and DuckDB's bindings then report leaked objects on stderr.
    with DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(SYNC_JOB).execute_in_process(
            partition_key=partition_key(SYNC_DAY, Scope("live", "voice")),
            instance=instance,
            raise_on_error=False,
        )
        records = instance.all_logs(result.run_id)
    event_text = "\n".join(f"{r.user_message} {r.dagster_event!r}" for r in records)
    return result, event_text, repr(defs.resources) + str(defs.resources)


@pytest.mark.parametrize("key", [GOOD_KEY, WRONG_KEY], ids=["successful-sync", "refused-key"])
def test_the_key_appears_nowhere(
    serve: Serve,
    warehouse: Warehouse,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    key: str,
    tmp_path: Path,
) -> None:
    with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
        result, event_text, resource_text = run_sync(serve, warehouse, tmp_path, monkeypatch, key)
    out, err = capfd.readouterr()
    stored = everything_stored(warehouse, tmp_path / "lake")  # tables, lake, the file itself
    everything = "\n".join([caplog.text, event_text, resource_text, out, err, stored])

    if key == GOOD_KEY:
        assert result.success
        assert "retrying" in caplog.text  # the faults really produced warnings to search
    else:
        assert not result.success
        assert "HTTP 403" in event_text  # the failure really was recorded, with its reason
    assert "x-api-key" not in caplog.text.lower()
    assert key not in everything
    assert GOOD_KEY not in everything and WRONG_KEY not in everything

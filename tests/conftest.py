"""Shared fixtures: the simulator on a loopback port, a fresh warehouse, a client.

Everything here is real: the simulator is an HTTP server on 127.0.0.1; the warehouse is a
DuckDB file in the test's temporary folder or a new database on a real PostgreSQL server
(``warehouse`` is parametrized over both, so every test using it runs on each engine). The
server is ``$POLYAI_TEST_POSTGRES_URL`` when set (``.ci/run`` starts one), else a throwaway
cluster started here from the installed PostgreSQL; where neither works, the PostgreSQL cases
are skipped with the reason, unless ``POLYAI_REQUIRE_POSTGRES=1`` (CI), which fails them.
The simulator's clock is frozen so that what it holds is fixed for the length of a test.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from core import api_contract as api
from core.normalize import reassemble
from devtools import postgres
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse
from resources.warehouse.duckdb_engine import DuckDBWarehouse
from resources.warehouse.postgres_engine import PostgresWarehouse
from simulator import FaultConfig, SimulatorConfig, SimulatorServer
from tests.s3 import bucket, ec2_metadata, s3_env, s3_server  # noqa: F401 (fixtures for every test)

FROZEN_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
CAMPAIGN_PROPERTY = "fault campaign"
"""The user property (``record_property``) holding the fault campaign's lines: a report
carries it from an xdist worker to the controller, which prints it at the end of the run
(tests/test_fault_campaign.py)."""
_CAMPAIGN_REPORT: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == CAMPAIGN_PROPERTY and report.when == "call":
            _CAMPAIGN_REPORT.extend(value)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _CAMPAIGN_REPORT:
        terminalreporter.section("fault campaign")
        for line in _CAMPAIGN_REPORT:
            terminalreporter.write_line(line)


E2E = "e2e"
"""The end-to-end set's marker (registered in pyproject.toml): a test that starts a real
process of the product or a peer (the CLI, the daemon, the webserver, a browser, a child
pytest, the benchmark, the fault campaign) or needs the PostgreSQL server. ``-m "not e2e"``
is the inner loop."""


STARTED_FIRST = (
    "tests/benchmarks/test_ingest.py",
    "tests/pipelines/test_webserver.py",
    "tests/pipelines/test_downstream_automation.py",
    "tests/pipelines/test_reexecution.py",
    "tests/test_fault_campaign.py",
    "tests/pipelines/test_ui_browser.py",
    "tests/pipelines/test_postgres_instance.py",
)
"""The longest tests (one to three minutes, mostly waiting on a daemon's ticks or a child's
work), started before the rest so that none of them begins near the end of a parallel run.
A worker is handed two tests at the start (``--maxschedchunk 1``): a long one and a shorter
one each."""


def _start_order(item: pytest.Item) -> tuple[int, bool]:
    if item.get_closest_marker(E2E) is not None:
        for rank, prefix in enumerate(STARTED_FIRST):
            if item.nodeid.startswith(prefix):
                return (rank, False)
        return (len(STARTED_FIRST), False)
    return (len(STARTED_FIRST), True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every PostgreSQL case is end-to-end (a "postgresql" parameter, or the server's
    fixture); and the end-to-end tests, the long ones, are collected first (the longest of
    them, :data:`STARTED_FIRST`, before the others), so that parallel workers start on them
    and the short ones fill in around them at the end instead of one long test running on
    alone."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and "postgresql" in callspec.params.values()
        if on_postgres or "postgres_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)
    items.sort(key=_start_order)


_GC_CALLBACKS_BEFORE_RUN: list[Any] = []


def pytest_configure(config: pytest.Config) -> None:
    _GC_CALLBACKS_BEFORE_RUN[:] = gc.callbacks


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the garbage-collector callbacks that the run added (Hypothesis adds one, to time
    collections, and never removes it). CPython releases ``gc.callbacks`` only after its last
    collection at exit, and such a callback's module globals reach, through pytest's session
    and the tests, everything the run imported: DuckDB's classes then outlive the interpreter,
    and DuckDB's bindings print a report of leaked objects after pytest's summary."""
    gc.callbacks[:] = [
        callback
        for callback in gc.callbacks
        if any(callback is before for before in _GC_CALLBACKS_BEFORE_RUN)
    ]


SYNC_DAY = date(2026, 11, 20)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    """The tests' simulator; a test marked ``latency_breakdown`` also gets the assumed
    per-stage breakdown (PolyAI publishes none), so that every table has rows."""
    return SimulatorConfig(
        api_key="test-key-9f3c",
        account_id="acct-test",
        project_id="proj-test",
        conversations_per_day=300,
        now=FROZEN_NOW,
        latency_breakdown=request.node.get_closest_marker("latency_breakdown") is not None,
    )


@pytest.fixture
def simulator(sim_config: SimulatorConfig) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim_config) as server:
        yield server


@pytest.fixture
def client(simulator: SimulatorServer) -> PolyAIClient:
    return client_for(simulator, page_size=50)


ENGINES = ["duckdb", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server for the tests (its ``postgres`` database)."""
    given = os.environ.get("POLYAI_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    root = Path(tempfile.mkdtemp(prefix="polyai-test-pg-"))
    try:
        cluster = postgres.start(root)
    except (postgres.ClusterError, OSError) as exc:
        postgres.stop(root)
        if os.environ.get("POLYAI_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here (POLYAI_REQUIRE_POSTGRES) but: {exc}")
        pytest.skip(f"PostgreSQL tests skipped: cannot start a server here: {exc}")
    try:
        yield cluster.url()
    finally:
        postgres.stop(root)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database of the test server."""
    return postgres.new_database(postgres_server)


@pytest.fixture(params=ENGINES)
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Warehouse:
    """An empty warehouse, once per engine."""
    if request.param == "duckdb":
        return DuckDBWarehouse(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")
    return PostgresWarehouse(url=request.getfixturevalue("postgres_url"))


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> DuckDBWarehouse:
    """An empty DuckDB warehouse, for what only DuckDB has (a file, its lock)."""
    return DuckDBWarehouse(url=f"duckdb:///{tmp_path / 'warehouse.duckdb'}")


Serve = Callable[..., SimulatorServer]


@pytest.fixture
def serve(sim_config: SimulatorConfig) -> Iterator[Serve]:
    """Start a simulator with ``sim_config`` changed by keyword (``faults=`` for faults)."""
    servers: list[SimulatorServer] = []

    def start(**changes: Any) -> SimulatorServer:
        if isinstance(changes.get("faults"), dict):
            changes["faults"] = FaultConfig(**changes["faults"])
        server = SimulatorServer(replace(sim_config, **changes)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def client_for(server: SimulatorServer, **overrides: Any) -> PolyAIClient:
    """A client of ``server`` with fast retries (waits of milliseconds, not seconds)."""
    config = server.config
    settings: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": config.api_key,
        "account_id": config.account_id,
        "project_id": config.project_id,
        "page_size": 100,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.01,
        "read_timeout_seconds": 5.0,
    }
    settings.update(overrides)
    return PolyAIClient(**settings)


@pytest.fixture
def sync_settings() -> dict[str, str]:
    """Extra settings for ``run_sync_job``; a test module overrides this fixture to add some."""
    return {}


@pytest.fixture
def sync_job(
    simulator: SimulatorServer,
    warehouse: Warehouse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sync_settings: dict[str, str],
) -> Any:
    """The Dagster sync job, configured for the simulator, the test's warehouse and a lake
    beside it."""
    from core.config import Settings
    from core.names import SYNC_JOB
    from pipelines.definitions import build_definitions

    for name, value in simulator.source_variables().items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(
        {
            "POLYAI_SYNC_START": "2026-11-01",
            "WAREHOUSE_URL": warehouse.url,
            "LAKE_URL": str(tmp_path / "lake"),
            **sync_settings,
        }
    )
    return build_definitions(settings).resolve_job_def(SYNC_JOB)


@pytest.fixture
def run_sync_job(sync_job: Any) -> Iterator[Callable[..., Any]]:
    """Run the sync job for one partition (default: SYNC_DAY, live.voice) in an ephemeral
    instance; returns the run's result. The dbt models (the KPIs) only with ``dbt=True``: dbt
    starts a process of its own and parses the project, about 5 s a run, which the tests that
    do not read them need not wait for."""
    from dagster import AssetKey, DagsterInstance

    from core.windows import Scope
    from pipelines.partitions import partition_key
    from resources.dbt import manifest
    from resources.warehouse.checks import CHECKS

    nodes = json.loads(manifest().read_text())["nodes"].values()
    models = {AssetKey(["polyai", n["name"]]) for n in nodes if n["resource_type"] == "model"}
    # Without the models, and without dbt's tests on the tables (dbt would run for those).
    without_dbt = sync_job.get_subset(
        asset_selection={k for k in sync_job.asset_layer.selected_asset_keys if k not in models},
        asset_check_selection={
            key
            for key in sync_job.asset_layer.asset_graph.asset_check_keys
            if key.name in {check.name for check in CHECKS}
        },
    )

    with DagsterInstance.ephemeral() as instance:

        def run(day: date = SYNC_DAY, scope: Scope | None = None, dbt: bool = False) -> Any:
            key = partition_key(day, scope or Scope("live", "voice"))
            job = sync_job if dbt else without_dbt
            result = job.execute_in_process(partition_key=key, instance=instance)
            assert result.success
            return result

        yield run


def whole_records(
    conversations: list[dict], turns: list[dict], genai: list[dict]
) -> dict[str, dict]:
    """Each conversation's source object put back together from its rows' ``raw`` (each
    part of the object is stored once: the conversation's without its turns, each turn's
    without the ``metadata`` object that ``turn_genai`` holds), by conversation id."""
    metadata: dict[str, dict[int, dict]] = {c["id"]: {} for c in conversations}
    for g in genai:
        metadata[g["conversation_id"]][g["turn_index"]] = json.loads(g["raw"])
    turns_of: dict[str, list[dict]] = {c["id"]: [] for c in conversations}
    for turn in sorted(turns, key=lambda t: (t["conversation_id"], t["turn_index"])):
        part = json.loads(turn["raw"])
        if turn["turn_index"] in metadata[turn["conversation_id"]]:
            assert api.T_METADATA not in part  # stored once, in turn_genai
        turns_of[turn["conversation_id"]].append(part)
    records = {}
    for conversation in conversations:
        whole = json.loads(conversation["raw"])
        assert "turns" not in whole  # stored once, in turns
        ident = conversation["id"]
        records[ident] = reassemble(whole, turns_of[ident], metadata[ident])
    return records


def everything_stored(warehouse: Warehouse, lake: Path) -> str:
    """Every row of every table (staging included), every lake file and (DuckDB) the
    file's bytes, as text: what a search for a secret or personal data must come up empty in."""
    import pyarrow.parquet as pq

    from core import schema
    from resources.warehouse import STAGE_PREFIX

    parts = []
    tables = [t.name for t in schema.metadata.sorted_tables]
    if warehouse.staging.in_transaction:
        tables += [STAGE_PREFIX + t.name for t in schema.WINDOW_TABLES]
    for table in tables:
        parts.append(warehouse.read_table(table).astype(str).to_csv())
    for path in sorted(lake.rglob("*")):
        if path.suffix == ".parquet":
            parts.append(pq.read_table(path).to_pandas().astype(str).to_csv())
        elif path.is_file():
            parts.append(path.read_text(errors="replace"))
    if getattr(warehouse, "path", None) is not None:
        parts.append(warehouse.path.read_bytes().decode("utf-8", errors="replace"))
    staged_files = getattr(warehouse.staging, "root", None)  # DuckDB's staged pages
    if staged_files is not None:
        for path in sorted(staged_files.rglob("*")):
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return "\n".join(parts)

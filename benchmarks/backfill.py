"""The backfill scenario: many small windows against an API that takes its time per page.

A backfill of a year is many daily windows of a few hundred conversations: one page each.
Against the real API a page of conversations with their turns takes about a second, so what a
backfill waits for is how many requests are in flight and what each window costs to
orchestrate, not parsing. This serves ``--days`` days x 2 scopes (live voice and chat) from the
simulator, every answer held back ``--latency-ms``, and times, one after another:

- **polyai-sync (in process)**: :func:`sync.window.sync_windows` over every window, the four
  tables only, ``POLYAI_MAX_IN_FLIGHT`` requests at once;
- **polyai-sync sync (Dagster)**: the command as a user runs it, in its own process: a Dagster
  backfill of the whole job (tables, checks, KPIs, lake), its runs in the command's process;
- **dlt (tuned)**: dlt's ``rest_api`` source with a resource per window, extracted in
  parallel by as many threads as polyai-sync has requests in flight.

Beside each time it prints the latency-bound limit, ``pages x latency / max in flight``: the
least any client keeping that many requests in flight could take, and the ratio to it.

    uv run python -m benchmarks.ingest --scenario backfill [--latency-ms 0,1000] [--days 60]
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from core.env import Env
from core.query import ConversationQuery
from core.windows import Scope, Window, daily_window
from simulator import SimulatorConfig, SimulatorServer
from simulator.faults import FaultConfig

FIRST_DAY = date(2026, 10, 1)
SCOPES = (Scope("live", "voice"), Scope("live", "chat"))
_MIDNIGHT = datetime.min.time()
DAGSTER_FLOOR = "Dagster's own cost (steps that do nothing)"
CONTENDERS = (
    "polyai-sync (in process)",
    "polyai-sync sync (Dagster)",
    "dlt (tuned)",
    DAGSTER_FLOOR,
)


@dataclass(frozen=True)
class Backfill:
    """One measurement's dataset and source."""

    days: int
    per_day: int
    latency_ms: float
    max_in_flight: int
    base_url: str = ""

    @property
    def windows(self) -> list[Window]:
        return [daily_window(FIRST_DAY + timedelta(days=i)) for i in range(self.days)]

    def simulator(self) -> SimulatorConfig:
        return SimulatorConfig(
            api_key="bench-key",
            conversations_per_day=self.per_day,
            flat_volume=True,
            late_arrival_rate=0.0,
            now=datetime.combine(FIRST_DAY + timedelta(days=self.days + 2), _MIDNIGHT, UTC),
            faults=FaultConfig(latency_ms=self.latency_ms),
        )

    def env(self, folder: Path) -> dict[str, str]:
        return {
            "DAGSTER_HOME": str(folder / "dagster_home"),
            "POLYAI_BASE_URL": self.base_url,
            "POLYAI_API_KEY": "bench-key",
            "POLYAI_ACCOUNT_ID": "demo-account",
            "POLYAI_PROJECT_ID": "demo-project",
            "POLYAI_ENVIRONMENTS": "live",
            "POLYAI_CHANNELS": ",".join(scope.channel for scope in SCOPES),
            "WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
            "LAKE_URL": str(folder / "lake"),
            "POLYAI_QA_SAMPLE_SIZE": "0",
            Env.POLYAI_MAX_IN_FLIGHT: str(self.max_in_flight),
        }


@dataclass(frozen=True)
class Timed:
    name: str
    seconds: float
    conversations: int
    requests: int


def _in_process(backfill: Backfill, folder: Path) -> int:
    from resources.polyai_api import PolyAIClient
    from resources.warehouse import warehouse_for
    from sync.window import sync_windows

    env = backfill.env(folder)
    client = PolyAIClient(
        base_url=backfill.base_url,
        api_key=env["POLYAI_API_KEY"],
        account_id=env["POLYAI_ACCOUNT_ID"],
        project_id=env["POLYAI_PROJECT_ID"],
        allow_insecure_http=True,
        max_in_flight=backfill.max_in_flight,
    )
    warehouse = warehouse_for(env["WAREHOUSE_URL"])
    scoped = [(scope, window) for scope in SCOPES for window in backfill.windows]
    for _ in sync_windows(client, warehouse, scoped):
        pass
    return warehouse.row_counts()["conversations"]


def _cli(backfill: Backfill, folder: Path) -> int:
    from resources.warehouse import warehouse_for

    env = backfill.env(folder)
    command = str(Path(sys.executable).with_name("polyai-sync"))
    last = FIRST_DAY + timedelta(days=backfill.days - 1)
    done = subprocess.run(
        [command, "sync", "--start", FIRST_DAY.isoformat(), "--end", last.isoformat()],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"polyai-sync sync exited {done.returncode}: {done.stdout[-2000:]}")
    return warehouse_for(env["WAREHOUSE_URL"]).row_counts()["conversations"]


def _dlt(backfill: Backfill, folder: Path) -> int:
    os.environ.update(
        {
            "RUNTIME__LOG_LEVEL": "WARNING",
            "EXTRACT__WORKERS": str(backfill.max_in_flight),
            "NORMALIZE__WORKERS": "2",
            "NORMALIZE__START_METHOD": "spawn",
        }
    )
    import dlt
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    from core import api_contract as api

    env = backfill.env(folder)
    resources: list[dict[str, Any]] = [
        {
            "name": f"w_{scope.channel}_{window.start:%Y%m%d}",
            "table_name": "conversations",
            "primary_key": "id",
            "write_disposition": "merge",
            "endpoint": {
                "path": api.endpoint_path(env["POLYAI_ACCOUNT_ID"], env["POLYAI_PROJECT_ID"]),
                "params": ConversationQuery.for_window(scope, window).params(),
                "data_selector": api.R_CONVERSATIONS,
            },
        }
        for scope in SCOPES
        for window in backfill.windows
    ]
    source = rest_api_source(
        {
            "client": {
                "base_url": backfill.base_url,
                "headers": {api.API_KEY_HEADER: env["POLYAI_API_KEY"]},
                "paginator": JSONResponseCursorPaginator(
                    cursor_path=api.R_CURSOR, cursor_param=api.P_CURSOR
                ),
            },
            "resources": resources,  # type: ignore[typeddict-item]
        },
        name="polyai",
        max_table_nesting=1,
        parallelized=True,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_backfill",
        pipelines_dir=str(folder / "dlt_pipelines"),
        destination=dlt.destinations.duckdb(str(folder / "dlt.duckdb")),
        dataset_name="polyai",
    )
    pipeline.run(source, loader_file_format="parquet")
    with pipeline.sql_client() as sql:
        return int(sql.execute_sql("SELECT count(*) FROM conversations")[0][0])


def _dagster_floor(backfill: Backfill, folder: Path) -> int:
    """The same backfill through the same runner, every step doing nothing but record its
    events (:mod:`benchmarks.dagster_floor`); the windows it reported."""
    os.environ.update(backfill.env(folder))
    from benchmarks.dagster_floor import MODULE
    from pipelines.instance import dagster_home
    from pipelines.partitions import partition_key
    from pipelines.runner import cli_instance, code_location, run_backfill

    keys = [str(partition_key(w, scope)) for scope in SCOPES for w in backfill.windows]
    home = dagster_home(folder / "dagster_home")
    with cli_instance(str(home)) as instance, code_location(instance, MODULE) as workspace:
        result = run_backfill(
            instance,
            workspace,
            keys,
            None,
            title="Dagster's own cost",
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    if result.failed or len(result.windows) != len(keys):
        raise RuntimeError(f"{len(result.failed)} of {len(keys)} windows failed")
    return len(result.windows)


RUNNERS = {"polyai-sync (in process)": _in_process, "polyai-sync sync (Dagster)": _cli}
RUNNERS["dlt (tuned)"] = _dlt
RUNNERS[DAGSTER_FLOOR] = _dagster_floor


def _child(name: str, backfill: Backfill, folder: Path, queue: multiprocessing.Queue) -> None:
    started = time.perf_counter()
    try:
        conversations = RUNNERS[name](backfill, folder)
    except Exception as error:  # reported by the parent, with the contender's name
        queue.put(f"{type(error).__name__}: {error}")
        return
    queue.put((time.perf_counter() - started, conversations))


def _serve(config: SimulatorConfig, ports: multiprocessing.Queue) -> None:
    server = SimulatorServer(config)
    ports.put(server.base_url)
    server.serve_forever()


def measure(backfill: Backfill, contenders: list[str]) -> list[Timed]:
    """Every contender against one simulator, each in a fresh folder and process."""
    spawn = multiprocessing.get_context("spawn")
    urls: multiprocessing.Queue = spawn.Queue()
    server = spawn.Process(target=_serve, args=(backfill.simulator(), urls), daemon=True)
    server.start()
    try:
        backfill = replace(backfill, base_url=urls.get(timeout=60))
        results = []
        for name in contenders:
            with tempfile.TemporaryDirectory(prefix="polyai-backfill-") as folder:
                before = _requests(backfill.base_url)
                queue: multiprocessing.Queue = spawn.Queue()
                child = spawn.Process(target=_child, args=(name, backfill, Path(folder), queue))
                child.start()
                outcome = queue.get()
                child.join()
                if isinstance(outcome, str):
                    raise RuntimeError(f"{name}: {outcome}")
                seconds, conversations = outcome
                requests = _requests(backfill.base_url) - before
                results.append(Timed(name, seconds, conversations, requests))
        return results
    finally:
        server.terminate()
        server.join()


def _requests(base_url: str) -> int:
    import httpx

    from simulator.server import COUNTERS_PATH

    return int(httpx.get(base_url + COUNTERS_PATH).json()["requests"])


def format_table(backfill: Backfill, results: list[Timed]) -> str:
    windows = backfill.days * len(SCOPES)
    pages = windows  # one page a window: --per-day is at most the API's page size
    bound = pages * backfill.latency_ms / 1000 / backfill.max_in_flight
    lines = [
        f"{windows} windows ({backfill.days} days x {len(SCOPES)} scopes), one page each, "
        f"{backfill.latency_ms:g} ms a page, {backfill.max_in_flight} in flight: "
        f"latency-bound limit {bound:.1f} s",
        "| contender | seconds | x limit | conversations | requests |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = f"{r.seconds / bound:.1f}x" if bound else "-"
        landed = "-" if r.name == DAGSTER_FLOOR else f"{r.conversations:,}"
        lines.append(f"| {r.name} | {r.seconds:.1f} | {ratio} | {landed} | {r.requests:,} |")
    by_name = {r.name: r for r in results}
    cli = by_name.get(CONTENDERS[1])
    for peer, label in ((CONTENDERS[0], "in process"), (DAGSTER_FLOOR, "Dagster's own cost")):
        if cli and peer in by_name:
            other = by_name[peer].seconds
            lines.append(
                f"Dagster path / {label}: {cli.seconds / other:.1f}x "
                f"({cli.seconds - other:.1f} s more)"
            )
    return "\n".join(lines)


def run(
    days: int, per_day: int, latencies: list[float], max_in_flight: int, contenders: list[str]
) -> int:
    """The scenario at each latency, a table each; nonzero if the contenders disagree."""
    for latency in latencies:
        backfill = Backfill(days, per_day, latency, max_in_flight)
        print(f"latency {latency:g} ms ...", file=sys.stderr, flush=True)
        results = measure(backfill, contenders)
        print(format_table(backfill, results), flush=True)
        if len({r.conversations for r in results if r.name != DAGSTER_FLOOR}) > 1:
            print("contenders landed different numbers of conversations", file=sys.stderr)
            return 1
    return 0

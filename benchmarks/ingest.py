"""Ingest benchmark: polyai-sync against dlt and against the floor, side by side.

For each size N, one simulator process serves a seeded dataset of N conversations (one
scope, spread evenly over 30 days (``--days``), about 12 turns each, each turn with its latency and
metadata in the shapes PolyAI publishes),
and each contender lands it into a fresh DuckDB file, one after the other, each in a child
process of its own so that its peak memory (RSS) is its own:

- ``polyai-sync``: the 30 windows through :func:`sync.window.sync_window`, the code the
  Dagster asset runs;
- ``polyai-sync (PostgreSQL)``: the same, into a new PostgreSQL database (COPY), and
  ``polyai-sync (PostgreSQL x2)``: two processes syncing alternate windows into one
  database at once (PostgreSQL takes concurrent writers; a DuckDB file does not). The server
  is ``--postgres-url`` or a throwaway cluster started from the installed PostgreSQL with its
  default durability; its own memory is not in the contender's RSS;
- ``polyai-sync (Dagster)``: the same 30 windows as a backfill through Dagster, the way
  ``polyai-sync sync`` runs it (runs of ``POLYAI_WINDOWS_PER_RUN`` windows), materializing
  the four table assets and their checks: the same work, plus Dagster;
- ``polyai-sync (whole job)``: the same backfill of every asset of the job, as the nightly
  schedule runs it (KPIs, the Parquet lake and the QA sample too);
- ``dlt (defaults)`` and ``dlt (tuned)``: a dlt ``rest_api`` source with cursor pagination
  and ``merge`` on ``id`` (tuned: parquet loader files, ``--workers`` normalize workers, turns'
  nested lists kept as JSON);
- ``floor``: the least work that lands the same rows: one cursor walk over the range with a
  plain httpx client, ``orjson`` parsing, one Arrow table a page, and DuckDB unnesting the
  turns in one ``INSERT`` a table;
- ``source``: a reader that only reads the bytes: the simulator's serving rate.

Every contender must land the same number of conversations and turns, or the run fails. A
contender whose processes hold more than ``--memory-cap-gib`` or run longer than
``--time-limit-minutes`` is stopped and reported as such.

    uv run python -m benchmarks.ingest                  # 10 000 and 100 000
    uv run python -m benchmarks.ingest --sizes 1000000  # the large option

``--latency-ms`` holds back every answer of the simulator (a real API takes about a second
for a page of conversations with their turns). ``--scenario backfill`` measures many small
windows instead (:mod:`benchmarks.backfill`):

    uv run python -m benchmarks.ingest --scenario backfill  # 60 days x 2 scopes, 0 and 1000 ms
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import multiprocessing
import os
import resource
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from queue import Empty
from typing import Any

import httpx
import orjson
import psutil

from core import api_contract as api
from core.env import Env
from core.query import ConversationQuery
from core.windows import Scope, Window, daily_window
from simulator import SimulatorConfig, SimulatorServer
from simulator.faults import FaultConfig
from simulator.server import COUNTERS_PATH

SCOPE = Scope("live", "voice")
DAYS = 30
FIRST_DAY = date(2026, 10, 1)
MAX_TURNS = 23
"""Turns are drawn evenly from 1..MAX_TURNS: twelve on average."""
SERIALIZED_BYTES_PER_CONVERSATION = 12_000
"""A generous bound, to size the simulator's cache so the whole dataset stays in it."""


@dataclass(frozen=True)
class Source:
    """Where the simulator serves the dataset, and what to ask it for."""

    base_url: str
    api_key: str
    account_id: str
    project_id: str
    page_size: int = 1000
    postgres: str = ""
    """A PostgreSQL server's URL, for the PostgreSQL contenders (each makes a database)."""
    days: int = DAYS
    """The dataset's daily windows, from FIRST_DAY."""

    @property
    def windows(self) -> list[Window]:
        return [daily_window(FIRST_DAY + timedelta(days=i)) for i in range(self.days)]

    @property
    def query(self) -> ConversationQuery:
        """The whole range in one query, for the contenders that do not sync by window."""
        windows = self.windows
        whole = Window(windows[0].start, windows[-1].end)
        return ConversationQuery.for_window(SCOPE, whole, limit=self.page_size)

    @property
    def path(self) -> str:
        return api.endpoint_path(self.account_id, self.project_id)

    def counters(self) -> dict[str, int]:
        return httpx.get(self.base_url + COUNTERS_PATH).json()


@dataclass(frozen=True)
class Landed:
    """What a contender reports from its own process."""

    conversations: int
    turns: int
    seconds: float
    peak_rss: int
    """Bytes: the child process's maximum resident set."""


@dataclass(frozen=True)
class Limits:
    """When the harness stops a contender."""

    memory_bytes: int
    seconds: float


@dataclass(frozen=True)
class Result:
    name: str
    landed: Landed | None
    requests: int
    failure: str | None = None
    """Why the contender has no figures (stopped over the memory cap or the time limit)."""


# --- contenders: each runs in a child process of its own and returns (conversations, turns)


def _sync_windows(source: Source, url: str, windows: list[Window]) -> None:
    from resources.polyai_api import PolyAIClient
    from resources.warehouse import warehouse_for
    from sync.window import sync_windows

    client = PolyAIClient(
        base_url=source.base_url,
        api_key=source.api_key,
        account_id=source.account_id,
        project_id=source.project_id,
        page_size=source.page_size,
    )
    warehouse = warehouse_for(url)
    workers = os.environ.get(Env.POLYAI_SYNC_WORKERS)  # --workers
    scoped = [(SCOPE, window) for window in windows]
    for _ in sync_windows(client, warehouse, scoped, workers=int(workers) if workers else None):
        pass


def _landed(url: str) -> tuple[int, int]:
    from resources.warehouse import warehouse_for

    counts = warehouse_for(url).row_counts()
    return counts["conversations"], counts["turns"]


def run_polyai_sync(source: Source, folder: Path) -> tuple[int, int]:
    url = f"duckdb:///{folder / 'warehouse.duckdb'}"
    _sync_windows(source, url, source.windows)
    return _landed(url)


def run_polyai_sync_postgres(source: Source, folder: Path) -> tuple[int, int]:
    from devtools.postgres import new_database

    url = new_database(source.postgres, "bench")
    _sync_windows(source, url, source.windows)
    return _landed(url)


def run_polyai_sync_postgres_2(source: Source, folder: Path) -> tuple[int, int]:
    """Two processes, alternate windows, one database, at the same time."""
    from concurrent.futures import ProcessPoolExecutor

    from devtools.postgres import new_database
    from resources.warehouse import warehouse_for

    url = new_database(source.postgres, "bench")
    warehouse_for(url).ensure_schema()
    shares = [source.windows[0::2], source.windows[1::2]]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(shares), mp_context=spawn) as pool:
        for done in [pool.submit(_sync_windows, source, url, share) for share in shares]:
            done.result()
    return _landed(url)


def _through_dagster(source: Source, folder: Path, tables_only: bool) -> tuple[int, int]:
    os.environ.update(
        {
            "DAGSTER_HOME": str(folder / "dagster_home"),
            "POLYAI_BASE_URL": source.base_url,
            "POLYAI_API_KEY": source.api_key,
            "POLYAI_ACCOUNT_ID": source.account_id,
            "POLYAI_PROJECT_ID": source.project_id,
            "POLYAI_ENVIRONMENTS": SCOPE.environment,
            "POLYAI_CHANNELS": SCOPE.channel,
            "POLYAI_SYNC_START": FIRST_DAY.isoformat(),
            "WAREHOUSE_URL": f"duckdb:///{folder / 'warehouse.duckdb'}",
            "LAKE_URL": str(folder / "lake"),
            "POLYAI_PAGE_SIZE": str(source.page_size),
        }
    )
    from assets.keys import TABLE_KEYS
    from core.config import Settings
    from pipelines.instance import dagster_home
    from pipelines.partitions import partition_key
    from pipelines.runner import cli_instance, code_location, run_backfill
    from resources.warehouse.duckdb_engine import DuckDBWarehouse

    settings = Settings.from_env(os.environ)
    home = dagster_home(folder / "dagster_home")
    keys = [str(partition_key(window, SCOPE)) for window in source.windows]
    # What `polyai-sync sync` does: one backfill, its runs executed in this process.
    with cli_instance(str(home)) as instance, code_location(instance) as workspace:
        result = run_backfill(
            instance,
            workspace,
            keys,
            list(TABLE_KEYS.values()) if tables_only else None,
            title="benchmark",
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
        )
    landed = [w for w in result.windows if w.success]
    if len(landed) != len(keys):
        reason = result.failed[0].error if result.failed else "not reported"
        raise RuntimeError(f"{len(keys) - len(landed)} window(s) failed through Dagster: {reason}")
    counts = DuckDBWarehouse(url=settings.warehouse_url).row_counts()
    return counts["conversations"], counts["turns"]


def run_polyai_sync_dagster(source: Source, folder: Path) -> tuple[int, int]:
    """The same sync as a Dagster backfill: the four table assets and their checks."""
    return _through_dagster(source, folder, tables_only=True)


def run_polyai_sync_dagster_all(source: Source, folder: Path) -> tuple[int, int]:
    """The whole job, as the nightly schedule runs it: KPIs, lake and QA sample too."""
    return _through_dagster(source, folder, tables_only=False)


def _dlt_pipeline_run(source: Source, folder: Path, tuned: bool) -> tuple[int, int]:
    if tuned:
        os.environ.update(
            {
                "NORMALIZE__WORKERS": str(max(1, int(os.environ.get(Env.POLYAI_SYNC_WORKERS, 2)))),
                "NORMALIZE__START_METHOD": "spawn",
                "DATA_WRITER__BUFFER_MAX_ITEMS": "20000",
                "DATA_WRITER__FILE_MAX_ITEMS": "200000",
            }
        )
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    import dlt
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    rest = rest_api_source(
        {
            "client": {
                "base_url": source.base_url,
                "headers": {api.API_KEY_HEADER: source.api_key},
                "paginator": JSONResponseCursorPaginator(
                    cursor_path=api.R_CURSOR, cursor_param=api.P_CURSOR
                ),
            },
            "resources": [
                {
                    "name": "conversations",
                    "primary_key": "id",
                    "write_disposition": "merge",
                    "endpoint": {
                        "path": source.path.lstrip("/"),
                        "params": source.query.params(),
                        "data_selector": api.R_CONVERSATIONS,
                    },
                }
            ],
        },
        name="polyai",
        max_table_nesting=1 if tuned else None,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_tuned" if tuned else "bench_defaults",
        pipelines_dir=str(folder / "dlt_pipelines"),
        destination=dlt.destinations.duckdb(str(folder / "dlt.duckdb")),
        dataset_name="polyai",
    )
    pipeline.run(rest, loader_file_format="parquet" if tuned else None)
    with pipeline.sql_client() as sql:
        conversations = sql.execute_sql("SELECT count(*) FROM conversations")[0][0]
        turns = sql.execute_sql("SELECT count(*) FROM conversations__turns")[0][0]
    return int(conversations), int(turns)


def run_dlt_defaults(source: Source, folder: Path) -> tuple[int, int]:
    return _dlt_pipeline_run(source, folder, tuned=False)


def run_dlt_tuned(source: Source, folder: Path) -> tuple[int, int]:
    return _dlt_pipeline_run(source, folder, tuned=True)


_FLOOR_CONVERSATIONS = """
    INSERT INTO conversations BY NAME
    SELECT * EXCLUDE (turns) FROM page
"""
_FLOOR_TURNS = """
    INSERT INTO turns
    SELECT conversation_id, turn_index - 1 AS turn_index,
           t.* EXCLUDE (metadata, entities), to_json(t.entities) AS entities,
           to_json(t.metadata) AS metadata
    FROM (SELECT id AS conversation_id, unnest(turns) AS t,
                 generate_subscripts(turns, 1) AS turn_index FROM page)
"""
_FLOOR_FIELDS = dict.fromkeys(
    ("variant_id", "variant_name", "from_number", "to_number", "handoff_reason",
     "handoff_destination")
)  # fmt: skip
"""Optional fields a page may leave out: present in every row, so each page has the same
columns (Arrow takes a page's columns from its first row)."""


def _floor_rows(conversations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's conversations as the floor's rows: the optional fields filled in, metrics
    and state as JSON text (a metric is a string or a list of strings: one Arrow type each)."""
    return [
        {
            **_FLOOR_FIELDS,
            **c,
            "metrics": orjson.dumps(c.get("metrics")).decode(),
            "state": orjson.dumps(c.get("state")).decode(),
        }
        for c in conversations
    ]


def run_floor(source: Source, folder: Path) -> tuple[int, int]:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(folder / "floor.duckdb"))
    query = source.query
    params: dict[str, Any] = query.params()
    created = False
    with httpx.Client(base_url=source.base_url, headers={api.API_KEY_HEADER: source.api_key}) as h:
        while True:
            body = orjson.loads(h.get(source.path, params=params).content)
            con.register("page", pa.Table.from_pylist(_floor_rows(body[api.R_CONVERSATIONS])))
            if not created:
                con.execute(_as_create(_FLOOR_CONVERSATIONS))
                con.execute(_as_create(_FLOOR_TURNS))
                created = True
            else:
                con.execute(_FLOOR_CONVERSATIONS)
                con.execute(_FLOOR_TURNS)
            cursor = body[api.R_CURSOR]
            if cursor is None:
                break
            params = {**query.params(), api.P_CURSOR: cursor}
    conversations = con.execute("SELECT count(*) FROM conversations").fetchone()[0]
    turns = con.execute("SELECT count(*) FROM turns").fetchone()[0]
    con.close()
    return conversations, turns


def _as_create(insert: str) -> str:
    """``INSERT INTO t SELECT ...`` as ``CREATE TABLE t AS SELECT ...``."""
    head, _, select = insert.strip().partition("\n")
    return f"CREATE TABLE {head.split()[2]} AS {select}"  # INSERT INTO <t> [BY NAME]


def run_source(source: Source, folder: Path) -> tuple[int, int]:
    """Read every page's bytes; conversations and turns are counted from the bytes."""
    query = source.query
    params: dict[str, Any] = query.params()
    conversations = turns = 0
    with httpx.Client(base_url=source.base_url, headers={api.API_KEY_HEADER: source.api_key}) as h:
        while True:
            body = h.get(source.path, params=params).content
            conversations += body.count(b'"account_id":')
            turns += body.count(b'"user_input_dtmf":')
            tail = body[body.rfind(b'"cursor":') :]
            cursor = orjson.loads(b"{" + tail)["cursor"]
            if cursor is None:
                return conversations, turns
            params = {**query.params(), api.P_CURSOR: cursor}


CONTENDERS: dict[str, Callable[[Source, Path], tuple[int, int]]] = {
    "polyai-sync": run_polyai_sync,
    "polyai-sync (PostgreSQL)": run_polyai_sync_postgres,
    "polyai-sync (PostgreSQL x2)": run_polyai_sync_postgres_2,
    "polyai-sync (Dagster)": run_polyai_sync_dagster,
    "polyai-sync (whole job)": run_polyai_sync_dagster_all,
    "dlt (defaults)": run_dlt_defaults,
    "dlt (tuned)": run_dlt_tuned,
    "floor": run_floor,
    "source": run_source,
}


PRELOADED = {
    "polyai-sync": ("sync.window", "resources.polyai_api", "resources.warehouse.duckdb_engine"),
    "polyai-sync (PostgreSQL)": (
        "sync.window",
        "resources.polyai_api",
        "resources.warehouse.postgres_engine",
        "psycopg",
    ),
    "polyai-sync (PostgreSQL x2)": ("devtools.postgres", "psycopg"),
    # Not pipelines.definitions: it builds `defs` from the environment when first imported,
    # and the contender sets the environment after these imports.
    "polyai-sync (Dagster)": ("dagster", "pipelines.runner", "pipelines.instance"),
    "polyai-sync (whole job)": ("dagster", "pipelines.runner", "pipelines.instance"),
    "dlt (defaults)": ("dlt", "dlt.sources.rest_api", "duckdb"),
    "dlt (tuned)": ("dlt", "dlt.sources.rest_api", "duckdb"),
    "floor": ("duckdb", "pyarrow"),
    "source": (),
}
"""Modules each contender imports before its clock starts: start-up is not ingest."""


# --- harness


def _child(name: str, source: Source, folder: Path, queue: multiprocessing.Queue) -> None:
    try:
        for module in PRELOADED[name]:
            importlib.import_module(module)
        started = time.perf_counter()
        conversations, turns = CONTENDERS[name](source, folder)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        queue.put(("ok", Landed(conversations, turns, seconds, peak)))
    except BaseException as exc:  # reported to the parent, which fails the run
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def measure(name: str, source: Source, limits: Limits) -> Result:
    """Run one contender in a fresh child process; its figures and the requests it made.

    The parent samples the whole process tree's resident memory (dlt's normalize workers are
    processes of their own) and stops a contender that goes over the memory cap or the time
    limit, reporting it as such rather than taking the machine down. Its folder is the
    parent's, removed whatever became of the child.
    """
    with tempfile.TemporaryDirectory(prefix="polyai-bench-") as folder:
        return _measure_in(name, source, limits, Path(folder))


def _measure_in(name: str, source: Source, limits: Limits, folder: Path) -> Result:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    before = source.counters()["requests"]
    process = context.Process(target=_child, args=(name, source, folder, queue))
    process.start()
    tree = psutil.Process(process.pid)
    started = time.monotonic()
    peak_tree = 0
    failure = None
    while True:
        try:
            status, payload = queue.get(timeout=0.05)
            break
        except Empty:
            pass
        peak_tree = max(peak_tree, _tree_rss(tree))
        if peak_tree > limits.memory_bytes:
            failure = f"stopped over the {limits.memory_bytes / 2**30:g} GiB memory cap"
        elif time.monotonic() - started > limits.seconds:
            failure = f"stopped after {limits.seconds / 60:.0f} minutes"
        elif not process.is_alive() and queue.empty():
            failure = f"died with exit code {process.exitcode}"
        if failure:
            _kill_tree(tree)
            process.join()
            return Result(name, None, source.counters()["requests"] - before, failure)
    process.join()
    if status != "ok":
        raise RuntimeError(f"{name} failed: {payload}")
    landed = replace(payload, peak_rss=max(payload.peak_rss, peak_tree))
    return Result(name, landed, source.counters()["requests"] - before)


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += member.memory_info().rss
    return total


def _kill_tree(process: psutil.Process) -> None:
    members = [process]
    with contextlib.suppress(psutil.Error):
        members += process.children(recursive=True)
    for member in members:
        with contextlib.suppress(psutil.Error):
            member.kill()


def _serve(config: SimulatorConfig, port_queue: multiprocessing.Queue) -> None:
    # A SIGTERM ignored where the benchmark was started (a shell's background job, say) is
    # ignored here too: terminate() would not end the server.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = SimulatorServer(config)
    port_queue.put(int(server.base_url.rsplit(":", 1)[1]))
    server.serve_forever()


def simulator_config(conversations: int, days: int = DAYS) -> SimulatorConfig:
    per_day = -(-conversations // days)
    return SimulatorConfig(
        conversations_per_day=per_day,
        max_turns=MAX_TURNS,
        flat_volume=True,
        late_arrival_rate=0.0,
        now=datetime.combine(FIRST_DAY + timedelta(days=days + 2), datetime.min.time(), UTC),
        cache_mb=max(256, per_day * days * SERIALIZED_BYTES_PER_CONVERSATION // 1_000_000),
    )


def bench_size(
    conversations: int,
    contenders: list[str],
    limits: Limits,
    page_size: int = 1000,
    postgres: str = "",
    days: int = DAYS,
    latency_ms: float = 0.0,
) -> list[Result]:
    """Every contender over one dataset, after one untimed pass that fills the simulator's
    cache (so that every contender, the first included, meets the same server)."""
    config = replace(
        simulator_config(conversations, days), faults=FaultConfig(latency_ms=latency_ms)
    )
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    server = context.Process(target=_serve, args=(config, port_queue), daemon=True)
    server.start()
    try:
        port = port_queue.get(timeout=60)
        source = Source(
            f"http://127.0.0.1:{port}",
            config.api_key,
            config.account_id,
            config.project_id,
            page_size,
            postgres,
            days,
        )
        run_source(source, Path("."))  # warm the simulator's cache
        results = []
        for name in contenders:
            print(f"  {name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, source, limits))
        return results
    finally:
        server.terminate()
        server.join(timeout=10)
        if server.is_alive():  # never left behind: exiting would wait on it for ever
            server.kill()
            server.join()


def check_same_rows(size: int, results: list[Result]) -> None:
    finished = [r for r in results if r.landed is not None]
    counts = {(r.landed.conversations, r.landed.turns) for r in finished}
    if len(counts) > 1:
        lines = "; ".join(
            f"{r.name}: {r.landed.conversations} conversations, {r.landed.turns} turns"
            for r in finished
        )
        raise SystemExit(f"contenders landed different rows at N={size}: {lines}")


def format_table(size: int, results: list[Result], days: int = DAYS) -> str:
    first = next(r.landed for r in results if r.landed is not None)
    lines = [
        f"N = {size:,}: {first.conversations:,} conversations, {first.turns:,} turns, "
        f"{days} daily windows",
        f"  {'contender':<37}{'conv/s':>10}{'turns/s':>11}{'peak RSS':>11}"
        f"{'requests':>10}{'seconds':>9}",
    ]
    for r in results:
        landed = r.landed
        if landed is None:
            lines.append(f"  {r.name:<37}{'-':>10}{'-':>11}{'-':>11}{r.requests:>10,}  {r.failure}")
            continue
        lines.append(
            f"  {r.name:<37}{landed.conversations / landed.seconds:>10,.0f}"
            f"{landed.turns / landed.seconds:>11,.0f}{landed.peak_rss / 2**20:>7,.0f} MiB"
            f"{r.requests:>10,}{landed.seconds:>9.1f}"
        )
    return "\n".join(lines)


def ratio_line(by_size: dict[int, list[Result]]) -> str:
    """The verdict: polyai-sync over the better dlt and over the floor at the largest size,
    and polyai-sync's peak memory at the largest size over the smallest."""
    largest, smallest = max(by_size), min(by_size)
    named = {r.name: r.landed for r in by_size[largest] if r.landed is not None}

    def turns_per_s(name: str) -> float:
        return named[name].turns / named[name].seconds

    parts = []
    if "polyai-sync" in named:
        ours = turns_per_s("polyai-sync")
        dlt_names = [n for n in ("dlt (defaults)", "dlt (tuned)") if n in named]
        if dlt_names:
            best = max(dlt_names, key=turns_per_s)
            parts.append(f"polyai-sync/dlt {ours / turns_per_s(best):.2f}x ({best})")
            memory = named["polyai-sync"].peak_rss / min(named[n].peak_rss for n in dlt_names)
            parts.append(f"memory polyai-sync/dlt {memory:.2f}x")
        if "floor" in named:
            parts.append(f"polyai-sync/floor {ours / turns_per_s('floor'):.2f}x")
        if "source" in named:
            parts.append(f"source/polyai-sync {turns_per_s('source') / ours:.2f}x")
        for name in POSTGRES_CONTENDERS:
            if name in named:
                parts.append(f"{name.removeprefix('polyai-sync ')}/DuckDB "
                             f"{turns_per_s(name) / ours:.2f}x")  # fmt: skip
        if "polyai-sync (Dagster)" in named:
            through = named["polyai-sync (Dagster)"].seconds / named["polyai-sync"].seconds
            parts.append(f"Dagster/in-process time {through:.2f}x")
        if largest != smallest:
            small = next(r.landed for r in by_size[smallest] if r.name == "polyai-sync")
            growth = named["polyai-sync"].peak_rss / small.peak_rss
            parts.append(f"peak RSS N={largest:,}/N={smallest:,} {growth:.2f}x")
    return f"at N={largest:,}: " + "; ".join(parts)


def _scenario_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        choices=("sizes", "backfill"),
        default="sizes",
        help="sizes: --sizes conversations over --days windows of one scope (default); "
        "backfill: many one-page windows of two scopes, per --latency-ms",
    )
    parser.add_argument(
        "--latency-ms",
        default=None,
        help="the simulator holds every answer back this long: one value for sizes "
        "(default 0), comma-separated values for backfill (default 0,1000)",
    )
    parser.add_argument(
        "--per-day",
        type=int,
        default=300,
        help="backfill: conversations a day in the busiest scope, one page (default 300)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=8,
        help="backfill: POLYAI_MAX_IN_FLIGHT, and dlt (tuned)'s extract threads (default 8)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _scenario_options(parser)
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated dataset sizes in conversations (default: 10000,100000)",
    )
    parser.add_argument(
        "--contenders",
        default=None,
        help=f"comma-separated subset of: {', '.join(CONTENDERS)} (backfill: "
        "polyai-sync (in process), polyai-sync sync (Dagster), dlt (tuned)); default: all",
    )
    parser.add_argument(
        "--memory-cap-gib",
        type=float,
        default=16.0,
        help="stop a contender whose processes hold more than this (default 16)",
    )
    parser.add_argument(
        "--time-limit-minutes",
        type=float,
        default=20.0,
        help="stop a contender that runs longer than this (default 20)",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=None,
        help=f"daily windows the dataset spans, one Dagster run each for the Dagster "
        f"contenders (default {DAYS}; backfill: {BACKFILL_DAYS})",
    )
    parser.add_argument(
        "--page-size",
        type=int,
        default=1000,
        help="conversations per request for every contender (default 1000, the API's maximum)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="POLYAI_SYNC_WORKERS for the polyai-sync contenders (processes that fetch and "
        "normalize pages; 0: in the writer's process) and dlt (tuned)'s normalize workers "
        "(at least 1); default: every core",
    )
    parser.add_argument(
        "--postgres-url",
        default="",
        help="a PostgreSQL server for the PostgreSQL contenders (default: a throwaway cluster "
        "started here from the installed PostgreSQL)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    latencies = _latencies(parser, args.latency_ms, args.scenario)
    if args.scenario == "backfill":
        return _backfill(parser, args, latencies)
    args.days = DAYS if args.days is None else args.days
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not 1 <= args.days <= 366:
        parser.error(f"--days must be between 1 and 366, got {args.days}")
    if not sizes or min(sizes) < args.days:
        parser.error(f"--sizes must each be at least --days, {args.days} (one conversation a day)")
    if not 1 <= args.page_size <= 1000:
        parser.error(f"--page-size must be between 1 and 1000, got {args.page_size}")
    given = args.contenders if args.contenders is not None else ",".join(CONTENDERS)
    contenders = [c.strip() for c in given.split(",") if c.strip()]
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown or not contenders:
        parser.error(f"unknown contender(s) {unknown}; choose from {', '.join(CONTENDERS)}")

    if args.workers < 0:
        parser.error(f"--workers must be 0 or more, got {args.workers}")
    os.environ[Env.POLYAI_SYNC_WORKERS] = str(args.workers)  # the contenders' children inherit it
    print(
        f"workers: {args.workers} (polyai-sync's page processes, dlt (tuned)'s normalize "
        f"processes: {max(1, args.workers)}); this machine has {os.cpu_count()} cores"
    )

    with _postgres_server(args.postgres_url, contenders) as postgres_url:
        if not postgres_url:
            contenders = [c for c in contenders if c not in POSTGRES_CONTENDERS]
        by_size: dict[int, list[Result]] = {}
        for size in sizes:
            print(f"N = {size:,} ...", file=sys.stderr, flush=True)
            limits = Limits(int(args.memory_cap_gib * 2**30), args.time_limit_minutes * 60)
            results = bench_size(
                size, contenders, limits, args.page_size, postgres_url, args.days, latencies[0]
            )
            check_same_rows(size, results)
            by_size[size] = results
            print(format_table(size, results, args.days), flush=True)
    print(ratio_line(by_size), flush=True)
    return 0


BACKFILL_DAYS = 60


def _latencies(parser: argparse.ArgumentParser, given: str | None, scenario: str) -> list[float]:
    text = given if given is not None else ("0,1000" if scenario == "backfill" else "0")
    try:
        latencies = [float(value) for value in text.split(",")]
    except ValueError:
        parser.error(f"--latency-ms must be comma-separated numbers, got {text!r}")
    if any(not 0 <= latency <= 60_000 for latency in latencies):
        parser.error(f"--latency-ms must each be between 0 and 60000, got {text!r}")
    if scenario == "sizes" and len(latencies) != 1:
        parser.error(f"--latency-ms takes one value for --scenario sizes, got {text!r}")
    return latencies


def _backfill(
    parser: argparse.ArgumentParser, args: argparse.Namespace, latencies: list[float]
) -> int:
    from benchmarks import backfill

    days = BACKFILL_DAYS if args.days is None else args.days
    if not 1 <= days <= 366:
        parser.error(f"--days must be between 1 and 366, got {days}")
    if not 1 <= args.per_day <= 1000:
        parser.error(f"--per-day must be between 1 and 1000 (one page), got {args.per_day}")
    if not 1 <= args.max_in_flight <= 64:
        parser.error(f"--max-in-flight must be between 1 and 64, got {args.max_in_flight}")
    contenders = list(backfill.CONTENDERS)
    if args.contenders is not None:
        contenders = [c.strip() for c in args.contenders.split(",") if c.strip()]
        unknown = [c for c in contenders if c not in backfill.CONTENDERS]
        if unknown or not contenders:
            parser.error(f"unknown contender(s) {unknown}; choose from {backfill.CONTENDERS}")
    return backfill.run(days, args.per_day, latencies, args.max_in_flight, contenders)


POSTGRES_CONTENDERS = ("polyai-sync (PostgreSQL)", "polyai-sync (PostgreSQL x2)")


@contextlib.contextmanager
def _postgres_server(given: str, contenders: list[str]) -> Iterator[str]:
    """``given``, or a throwaway cluster for the run ('' when none is needed or none starts:
    the PostgreSQL contenders are then left out, saying why)."""
    if given or not any(c in POSTGRES_CONTENDERS for c in contenders):
        yield given
        return
    from devtools import postgres

    root = Path(tempfile.mkdtemp(prefix="polyai-bench-pg-"))
    try:
        cluster = postgres.start(root, durable=True)
    except (postgres.ClusterError, OSError) as exc:
        postgres.stop(root)
        print(f"PostgreSQL contenders left out: {exc}", file=sys.stderr, flush=True)
        yield ""
        return
    try:
        yield cluster.url()
    finally:
        postgres.stop(root)


if __name__ == "__main__":
    sys.exit(main())

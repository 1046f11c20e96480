"""The ``polyai-sync`` command line: demo, simulator, sync, ui and forget.

Runs started here are recorded in the Dagster instance at ``$DAGSTER_HOME`` (a project-local
folder when unset), the same one ``polyai-sync ui`` opens.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from core.config import Settings
from core.env import LOCAL_DIR
from core.errors import PolyAISyncError
from core.windows import Scope, days_between
from pipelines.dbt_command import add_dbt_parser
from pipelines.forget_command import add_forget_parser
from pipelines.sync_command import UI_PORT, run_sync
from simulator import FaultConfig, SimulatorConfig, SimulatorServer

if TYPE_CHECKING:
    from resources.warehouse import Warehouse

DEMO_DIR = LOCAL_DIR / "demo"
DEMO_DAYS = 3
DEMO_PARTITION_DAYS = 30


class UsageError(PolyAISyncError, ValueError):
    """Bad command-line input; the message names the argument."""


def _parse_date(flag: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{flag}: {value!r} is not a date (YYYY-MM-DD)") from None


def _last_complete_day() -> date:
    return datetime.now(UTC).date() - timedelta(days=1)


def _select_scopes(
    settings: Settings, environments: Sequence[str], channels: Sequence[str]
) -> list[Scope]:
    for flag, chosen, configured, variable in (
        ("--environment", environments, settings.environments, "POLYAI_ENVIRONMENTS"),
        ("--channel", channels, settings.channels, "POLYAI_CHANNELS"),
    ):
        unknown = [value for value in chosen if value not in configured]
        if unknown:
            raise UsageError(
                f"{flag} {', '.join(unknown)} is not configured; {variable} holds "
                f"{', '.join(configured)}"
            )
    return [
        scope
        for scope in settings.scopes
        if (not environments or scope.environment in environments)
        and (not channels or scope.channel in channels)
    ]


def _select_days(settings: Settings, start: date, end: date) -> list[date]:
    if start > end:
        raise UsageError(f"--start {start} is after --end {end}")
    if start < settings.sync_start:
        raise UsageError(
            f"--start {start} is before POLYAI_SYNC_START ({settings.sync_start}), "
            "the first partition"
        )
    last = _last_complete_day()
    if end > last:
        raise UsageError(f"--end {end} is not a complete UTC day yet; the latest is {last}")
    return list(days_between(start, end))


def cmd_sync(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    settings.require_source()
    start = _parse_date("--start", args.start)
    end = _parse_date("--end", args.end)
    scopes = _select_scopes(settings, args.environment or [], args.channel or [])
    days = _select_days(settings, start, end)
    return run_sync(settings, days, scopes, LOCAL_DIR / "dagster_home", verbose=args.verbose)


def _demo_environment(server: SimulatorServer, warehouse: Path, sync_start: date) -> dict[str, str]:
    return {
        **server.source_variables(),
        "POLYAI_SYNC_START": sync_start.isoformat(),
        "WAREHOUSE_URL": f"duckdb:///{warehouse}",
        # A lake the user chose (an object store, say) is kept; the demo's own otherwise.
        "LAKE_URL": os.environ.get("LAKE_URL") or str(warehouse.parent / "lake"),
    }


def cmd_demo(args: argparse.Namespace) -> int:
    root = DEMO_DIR.absolute()
    warehouse = root / "warehouse.duckdb"
    last = _last_complete_day()
    days = [last - timedelta(days=n) for n in reversed(range(DEMO_DAYS))]
    # Freeze the simulator's clock so what it holds cannot change while we compare.
    config = SimulatorConfig(now=datetime.now(UTC))
    with SimulatorServer(config) as server:
        os.environ.update(
            _demo_environment(server, warehouse, last - timedelta(days=DEMO_PARTITION_DAYS))
        )
        settings = Settings.from_env(os.environ)
        print(f"Simulator serving on {server.base_url}", flush=True)
        status = run_sync(settings, days, settings.scopes, root / "dagster_home")
        expected = _simulator_counts(server, days, settings.scopes)

    from resources.warehouse import warehouse_for

    store = warehouse_for(settings.warehouse_url, settings.warehouse_schema)
    actual = store.row_counts(
        where="conversation_date BETWEEN $first AND $last",
        params={"first": days[0], "last": days[-1]},
    )
    print(f"\nWarehouse {warehouse} ({days[0]} .. {days[-1]}):")
    print(f"  {'table':<15}{'rows':>8}{'simulator':>11}")
    for table, rows in actual.items():
        print(f"  {table:<15}{rows:>8}{expected.get(table, 0):>11}")
    if actual != expected:
        print("The warehouse does not match the simulator.", file=sys.stderr)
        status = status or 1
    _print_kpis(store, days)
    print(
        "\nOpen these runs in the Dagster UI:\n"
        "  uv run polyai-sync ui --demo\n"
        f"  then browse http://127.0.0.1:{UI_PORT}/assets/polyai/conversations "
        "(partitions and row counts) and /runs"
    )
    return status


def _print_kpis(store: Warehouse, days: list[date]) -> None:
    """A short KPI table for the synced days, from the KPI tables the sync just computed."""
    from resources.warehouse.analytics import kpi_summary

    rows = kpi_summary(store, days[0], days[-1])
    print("\nKPIs (polyai.conversation_kpis, polyai.latency_kpis):")
    print(f"  {'day':<11}{'scope':<12}{'convs':>6}{'handoffs':>9}{'contained':>10}"
          f"{'avg dur':>8}{'p95 latency':>12}")  # fmt: skip
    for day, scope, convs, handoffs, contained, duration, p95 in rows:
        print(
            f"  {day!s:<11}{scope:<12}{convs:>6}{handoffs:>9}{_shown(contained, '.1%'):>10}"
            f"{_shown(duration, '.0f', 's'):>8}{_shown(p95, '.0f', 'ms'):>12}"
        )


def _shown(value: float | None, spec: str, unit: str = "") -> str:
    """A KPI as printed; a null one (e.g. latency with transcripts hidden) as ``-``."""
    return "-" if value is None else f"{value:{spec}}{unit}"


def _simulator_counts(
    server: SimulatorServer, days: list[date], scopes: list[Scope]
) -> dict[str, int]:
    """Rows each table should hold for these windows, counted from the simulator's data."""
    from core import api_contract as api
    from core.windows import daily_window

    counts = dict.fromkeys(("conversations", "turns", "turn_latency", "turn_genai"), 0)
    for day in days:
        window = daily_window(day)
        for scope in scopes:
            for record in server.dataset.conversations_in(
                scope.environment, [scope.channel], window.start, window.end, True, True
            ):
                counts["conversations"] += 1
                counts["turns"] += len(record["turns"])
                breakdown = record.get(api.R_LATENCY_BREAKDOWN, {})  # assumed: rarely served
                counts["turn_latency"] += sum(len(t["stages"]) for t in breakdown.get("turns", []))
                counts["turn_genai"] += sum(
                    isinstance(t.get(api.T_METADATA), dict) for t in record["turns"]
                )
    return counts


def cmd_simulator(args: argparse.Namespace) -> int:
    try:
        faults = FaultConfig(
            rate_429=args.rate_429,
            rate_5xx=args.rate_5xx,
            retry_after_seconds=args.retry_after,
            latency_ms=args.latency_ms,
            truncate_rate=args.truncate_rate,
            drop_rate=args.drop_rate,
            reject_cursor_rate=args.reject_cursor_rate,
            seed=args.seed,
        )
    except ValueError as exc:
        # Name the flag the user typed, not the field behind it.
        message = re.sub(r"fault (\w+)", lambda m: "--" + m[1].replace("_", "-"), str(exc))
        raise UsageError(message) from None
    if args.conversations_per_day < 1:
        raise UsageError("--conversations-per-day must be at least 1")
    config = SimulatorConfig(
        api_key=args.api_key,
        seed=args.seed,
        conversations_per_day=args.conversations_per_day,
        faults=faults,
    )
    server = SimulatorServer(config, host=args.host, port=args.port)
    print(
        f"PolyAI API simulator on {server.base_url} (Ctrl-C stops it). To sync from it:\n"
        f"  export POLYAI_BASE_URL={server.base_url}\n"
        f"  export POLYAI_ACCOUNT_ID={config.account_id} POLYAI_PROJECT_ID={config.project_id}\n"
        "  export POLYAI_API_KEY=<the --api-key value>",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from pipelines.instance import dagster_home

    env = dict(os.environ)
    server = None
    if args.demo:
        server = SimulatorServer(SimulatorConfig()).start()
        root = DEMO_DIR.absolute()
        env.update(
            _demo_environment(
                server,
                root / "warehouse.duckdb",
                _last_complete_day() - timedelta(days=DEMO_PARTITION_DAYS),
            )
        )
        home = dagster_home(root / "dagster_home")
    else:
        home = dagster_home(LOCAL_DIR / "dagster_home")
    env["DAGSTER_HOME"] = str(home)
    # The dagster beside this Python: `.venv/bin/polyai-sync ui` works without the venv on PATH.
    beside = Path(sys.executable).parent / "dagster"
    command = [
        str(beside) if beside.exists() else "dagster",
        "dev",
        "-m",
        "pipelines.definitions",
        "-h",
        args.host,
        "-p",
        str(args.port),
    ]
    print(f"Dagster UI on http://{args.host}:{args.port} (instance {home}); Ctrl-C stops it.")
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.stop()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="polyai-sync",
        description="Sync PolyAI conversations into an analytics warehouse through Dagster.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="sync the last three days from the bundled simulator into a local DuckDB"
    )
    demo.set_defaults(func=cmd_demo)

    sim = commands.add_parser("simulator", help="serve the bundled PolyAI API simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8000)
    sim.add_argument("--api-key", default="demo-key", help="the key clients must send")
    sim.add_argument("--seed", type=int, default=SimulatorConfig.seed)
    sim.add_argument(
        "--conversations-per-day",
        type=int,
        default=SimulatorConfig.conversations_per_day,
        help="volume of live voice on an average weekday; other scopes scale from it",
    )
    faults = sim.add_argument_group("fault injection (rates are per request, 0..1)")
    faults.add_argument("--rate-429", type=float, default=0.0)
    faults.add_argument("--rate-5xx", type=float, default=0.0)
    faults.add_argument("--retry-after", type=float, default=1.0, help="seconds, sent with 429")
    faults.add_argument("--latency-ms", type=float, default=0.0, help="added to every response")
    faults.add_argument("--truncate-rate", type=float, default=0.0)
    faults.add_argument("--drop-rate", type=float, default=0.0)
    faults.add_argument("--reject-cursor-rate", type=float, default=0.0)
    sim.set_defaults(func=cmd_simulator)

    sync = commands.add_parser(
        "sync", help="materialize the sync partitions from --start to --end (inclusive)"
    )
    sync.add_argument("--start", required=True, help="first UTC day, YYYY-MM-DD")
    sync.add_argument("--end", required=True, help="last UTC day, YYYY-MM-DD (inclusive)")
    sync.add_argument("--environment", action="append", help="repeatable; default: all configured")
    sync.add_argument("--channel", action="append", help="repeatable; default: all configured")
    sync.add_argument(
        "--verbose", action="store_true", help="also print Dagster's own log and tracebacks"
    )
    sync.set_defaults(func=cmd_sync)

    ui = commands.add_parser("ui", help="open the Dagster UI on this project's instance")
    ui.add_argument("--demo", action="store_true", help="on the demo's instance and warehouse")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=UI_PORT)
    ui.set_defaults(func=cmd_ui)

    add_forget_parser(commands)
    add_dbt_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PolyAISyncError as exc:
        if not isinstance(exc, ValueError):  # bad input is a ValueError (ConfigError, ...)
            raise
        print(f"polyai-sync: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The fault campaign: every fault a nightly sync meets over the years, injected on purpose,
and the proof that none of them loses or duplicates a conversation.

Each scenario syncs a few windows through :func:`sync.window.sync_window` into a fresh
DuckDB file while a fault is injected: API faults from the simulator, SIGKILL of the sync's
process at random moments, the warehouse file locked, full or read-only. A sync that meets a
fault either recovers to the exact data or fails with a clear error and leaves the published
tables as they were; then the fault clears, the sync runs again, and the warehouse must hold
exactly the conversations the simulator serves: none missing, none twice, none extra.

    uv run python -m devtools.campaign              # the size CI runs (in the test suite)
    uv run python -m devtools.campaign --scale 10   # ten times the conversations and kills

It prints a line per scenario and, last, the summary line: faults injected, runs,
conversations expected, conversations landed, duplicates, lost. It exits 1 if any scenario
failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

FROZEN_NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FIRST_DAY = date(2026, 11, 18)
PAGE_SIZE = 25


@dataclass
class Outcome:
    """What one scenario did and found."""

    name: str
    faults: int = 0
    runs: int = 0
    expected: int = 0
    landed: int = 0
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not (self.problems or self.duplicates or self.lost or self.unexpected)

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED: " + "; ".join(self.problems or ["rows"])
        return (
            f"  {self.name:<38} faults {self.faults:>4}  runs {self.runs:>3}  "
            f"expected {self.expected:>6}  landed {self.landed:>6}  dup {self.duplicates}  "
            f"lost {self.lost}  {verdict}"
        )


def summary(outcomes: list[Outcome]) -> str:
    total = {
        name: sum(getattr(o, name) for o in outcomes)
        for name in ("faults", "runs", "expected", "landed", "duplicates", "lost")
    }
    return (
        f"fault campaign: {total['faults']:,} faults injected, {total['runs']:,} runs, "
        f"{total['expected']:,} conversations expected, {total['landed']:,} landed, "
        f"{total['duplicates']:,} duplicates, {total['lost']:,} lost"
    )


# --- helpers ---------------------------------------------------------------------------


def _sim_config(scale: int, **faults: object):
    from simulator import FaultConfig, SimulatorConfig

    return SimulatorConfig(
        api_key="campaign-key-5e1d",
        account_id="acct-campaign",
        project_id="proj-campaign",
        conversations_per_day=60 * scale,
        now=FROZEN_NOW,
        faults=FaultConfig(**faults),  # type: ignore[arg-type]
    )


def _windows(scale: int):
    from core.windows import daily_window

    return [daily_window(FIRST_DAY + timedelta(days=i)) for i in range(2 + min(scale, 3))]


def _client(server, **overrides):
    from resources.polyai_api import PolyAIClient

    c = server.config
    settings = {
        "base_url": server.base_url,
        "api_key": c.api_key,
        "account_id": c.account_id,
        "project_id": c.project_id,
        "page_size": PAGE_SIZE,
        "backoff_base_seconds": 0.001,
        "backoff_max_seconds": 0.01,
        "max_retry_after_seconds": 0.05,
        "read_timeout_seconds": 2.0,
    }
    settings.update(overrides)
    return PolyAIClient(**settings)


def _expected_ids(dataset, windows, scope) -> set[str]:
    return {
        record["id"]
        for window in windows
        for record in dataset.conversations_in(
            scope.environment, [scope.channel], window.start, window.end
        )
    }


def _stored_ids(warehouse) -> list[str]:
    """Every stored conversation id (a read that also shows the file is not corrupt)."""
    if not warehouse.exists():
        return []
    with warehouse.connect(read_only=True) as con:
        return [row[0] for row in con.execute(
            f"SELECT id FROM {warehouse.table_ref('conversations')}"
        ).fetchall()]  # fmt: skip


def _refused(outcome: Outcome, done: subprocess.CompletedProcess, marker: str, what: str) -> None:
    """A run that met a warehouse fault must have failed, saying so (``marker`` in stderr)."""
    if done.returncode == 0:
        outcome.problems.append(what)
    elif marker not in done.stderr:
        outcome.problems.append(f"unclear failure: {done.stderr[-300:]}")


def _tally(outcome: Outcome, warehouse, expected: set[str]) -> None:
    ids = _stored_ids(warehouse)
    outcome.expected += len(expected)
    outcome.landed += len(set(ids) & expected)
    outcome.duplicates += len(ids) - len(set(ids))
    outcome.lost += len(expected - set(ids))
    outcome.unexpected += len(set(ids) - expected)
    with warehouse.connect(read_only=True) as con:
        states = con.execute(
            f"SELECT status, count(*) FROM {warehouse.table_ref('sync_state')} GROUP BY status"
        ).fetchall()
        staged = warehouse.staging.rows(con, "conversations")
    if {status for status, _ in states} != {"complete"}:
        outcome.problems.append(f"sync state not all complete: {states}")
    if staged:
        outcome.problems.append(f"{staged} staged rows left behind")


CLEAR_ERRORS = ("PolyAIError", "WarehouseError", "PaginationError", "QuarantineThresholdError")


def _sync_all(client, warehouse, scope, windows) -> None:
    from sync.window import sync_window

    for window in windows:
        sync_window(client, warehouse, scope, window)


# --- API faults ----------------------------------------------------------------------------

API_FAULTS: dict[str, dict[str, object]] = {
    "429 bursts with Retry-After": {"rate_429": 0.35, "retry_after_seconds": 1},
    "429 bursts without Retry-After": {"rate_429": 0.35, "retry_after_format": "none"},
    "429 with a long Retry-After": {"rate_429": 0.2, "retry_after_seconds": 3600},
    "5xx storm": {"rate_5xx": 0.45},
    "timeouts": {"stall_rate": 0.25, "stall_seconds": 0.6},
    "dropped connections": {"drop_rate": 0.3},
    "truncated bodies": {"truncate_rate": 0.3},
    "non-JSON bodies": {"non_json_rate": 0.3},
    "a page repeating the previous one": {"repeat_page_rate": 0.3},
    "cursor rejected mid-window": {"reject_cursor_rate": 0.15},
    "empty page with a cursor": {"empty_page_rate": 0.3},
    "5xx beyond every retry": {"rate_5xx": 1.0},
}


def api_fault(name: str, faults: dict[str, object], scale: int, folder: Path) -> Outcome:
    """Publish the first window cleanly, then sync every window with the fault on: the run
    recovers, or fails with a clear error leaving what was published as it was (a window it
    finished is replaced by the same rows). Then the fault clears and the sync runs again."""
    from core.windows import Scope
    from resources.warehouse import warehouse_for
    from simulator import SimulatorServer

    outcome = Outcome(f"API: {name}")
    scope = Scope("live", "voice")
    windows = _windows(scale)
    warehouse = warehouse_for(f"duckdb:///{folder / 'api.duckdb'}")
    timeouts = {"read_timeout_seconds": 0.2} if "stall_rate" in faults else {}
    with SimulatorServer(_sim_config(scale)) as clean:
        expected = _expected_ids(clean.dataset, windows, scope)
        outcome.runs += 1
        _sync_all(_client(clean), warehouse, scope, windows[:1])
        before = _stored_ids(warehouse)
        with SimulatorServer(_sim_config(scale, seed=scale, **faults)) as faulty:
            outcome.runs += 1
            try:
                _sync_all(_client(faulty, **timeouts), warehouse, scope, windows)
            except Exception as exc:  # given up on: it must say what happened
                if not any(cls.__name__ in CLEAR_ERRORS for cls in type(exc).__mro__):
                    outcome.problems.append(f"unclear failure {type(exc).__name__}: {exc}")
                after = _stored_ids(warehouse)
                if not set(before) <= set(after) or len(after) != len(set(after)):
                    outcome.problems.append("a failed run damaged published windows")
                if not set(after) <= expected:
                    outcome.problems.append("a failed run published what the API does not hold")
            else:  # it recovered: the data must be exact now, before any clean run
                outcome.faults += sum(faulty.faults.injected.values())
                _tally(outcome, warehouse, expected)
                return outcome
            outcome.faults += sum(faulty.faults.injected.values())
        outcome.runs += 1
        _sync_all(_client(clean), warehouse, scope, windows)
    _tally(outcome, warehouse, expected)
    return outcome


# --- process and warehouse faults: the sync runs in a child process -------------------------


def _child_command(server, url: str, windows, *extra: str) -> list[str]:
    c = server.config
    days = [w.start.date().isoformat() for w in windows]
    return [sys.executable, "-m", "devtools.campaign", "child", url, server.base_url,
            c.api_key, c.account_id, c.project_id, ",".join(days), *extra]  # fmt: skip


def _child(argv: list[str]) -> int:
    """A sync of some days in this process (what the campaign kills, starves and locks)."""
    parser = argparse.ArgumentParser(prog="devtools.campaign child")
    for name in ("url", "base_url", "key", "account", "project", "days"):
        parser.add_argument(name)
    parser.add_argument("--max-file-bytes", type=int, default=0)
    args = parser.parse_args(argv)
    if args.max_file_bytes:  # a disk that fills up: writes past this fail with EFBIG
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.max_file_bytes, args.max_file_bytes))
    from core.windows import Scope, daily_window
    from resources.polyai_api import PolyAIClient
    from resources.warehouse import warehouse_for

    client = PolyAIClient(base_url=args.base_url, api_key=args.key, account_id=args.account,
                          project_id=args.project, page_size=PAGE_SIZE)  # fmt: skip
    windows = [daily_window(date.fromisoformat(d)) for d in args.days.split(",")]
    try:
        _sync_all(client, warehouse_for(args.url), Scope("live", "voice"), windows)
    except Exception as exc:
        print(f"sync failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


def _table_contents(warehouse) -> dict[str, list[tuple]]:
    from core import schema

    contents = {}
    with warehouse.connect(read_only=True) as con:
        for table in schema.WINDOW_TABLES:
            columns = [c.name for c in table.columns if c.name not in ("load_id", "loaded_at")]
            order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
            listed = ", ".join(f'"{c}"' for c in columns)
            contents[table.name] = con.execute(
                f"SELECT {listed} FROM {warehouse.table_ref(table.name)} ORDER BY {order}"
            ).fetchall()
    return contents


def process_kills(scale: int, folder: Path, rng: random.Random) -> Outcome:
    """SIGKILL the sync at random moments (in a request, normalizing, inside a commit),
    several times in one multi-window sync; then let it finish: the tables must equal an
    undisturbed run's."""
    from core.windows import Scope
    from resources.warehouse import warehouse_for
    from simulator import SimulatorServer

    outcome = Outcome("process: SIGKILL at random moments")
    scope, windows = Scope("live", "voice"), _windows(scale)
    baseline = warehouse_for(f"duckdb:///{folder / 'baseline.duckdb'}")
    target = warehouse_for(f"duckdb:///{folder / 'killed.duckdb'}")
    with SimulatorServer(_sim_config(scale)) as quick:
        _sync_all(_client(quick), baseline, scope, windows)
        expected = _expected_ids(quick.dataset, windows, scope)
    with SimulatorServer(_sim_config(scale, latency_ms=120)) as slow:
        for _ in range(3 * scale):
            child = subprocess.Popen(_child_command(slow, target.url, windows),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            outcome.runs += 1
            try:
                child.wait(timeout=rng.uniform(1.2, 4.0))  # start-up is ~1 s of it
                break  # it finished before the kill: nothing left to interrupt
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGKILL)
                child.wait()
                outcome.faults += 1
        final = subprocess.run(_child_command(slow, target.url, windows),
                               capture_output=True, text=True, timeout=600)  # fmt: skip
        outcome.runs += 1
        if final.returncode:
            outcome.problems.append(f"the run after the kills failed: {final.stderr[-300:]}")
    if _table_contents(target) != _table_contents(baseline):
        outcome.problems.append("tables differ from an undisturbed run's")
    _tally(outcome, target, expected)
    return outcome


def warehouse_faults(scale: int, folder: Path) -> list[Outcome]:
    """The DuckDB file locked by another process, the disk full, the file read-only: each a
    clear failure (or a wait, for the lock) and no corruption; a run after it clears lands
    everything."""
    from core.windows import Scope
    from simulator import SimulatorServer

    scope, windows = Scope("live", "voice"), _windows(scale)
    with SimulatorServer(_sim_config(scale)) as server:
        expected = _expected_ids(server.dataset, windows, scope)
        return [
            fault(server, scope, windows, expected, folder)
            for fault in (_locked_file, _full_disk, _read_only_file)
        ]


def _locked_file(server: Any, scope: Any, windows: list, expected: set, folder: Path) -> Outcome:
    from resources.warehouse import warehouse_for

    locked = Outcome("warehouse: file locked for 3 s")
    warehouse = warehouse_for(f"duckdb:///{folder / 'locked.duckdb'}")
    warehouse.ensure_schema()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(3)", str(warehouse.path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    locked.faults += 1
    locked.runs += 1
    _sync_all(_client(server), warehouse, scope, windows)  # waits for the lock
    holder.wait(timeout=30)
    _tally(locked, warehouse, expected)
    return locked


def _full_disk(server: Any, scope: Any, windows: list, expected: set, folder: Path) -> Outcome:
    from resources.warehouse import warehouse_for

    full = Outcome("warehouse: disk full")
    warehouse = warehouse_for(f"duckdb:///{folder / 'full.duckdb'}")
    starved = subprocess.run(
        _child_command(server, warehouse.url, windows, "--max-file-bytes", "400000"),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    full.faults += 1
    full.runs += 1
    _refused(full, starved, "sync failed:", "the starved run did not notice the full disk")
    _stored_ids(warehouse)  # the file still opens and reads: no corruption
    full.runs += 1
    _sync_all(_client(server), warehouse, scope, windows)
    _tally(full, warehouse, expected)
    return full


def _read_only_file(server: Any, scope: Any, windows: list, expected: set, folder: Path) -> Outcome:
    from resources.warehouse import warehouse_for

    read_only = Outcome("warehouse: read-only file")
    with _read_only_place(folder / "ro") as (place, lock, unlock):
        warehouse = warehouse_for(f"duckdb:///{place / 'ro.duckdb'}")
        _sync_all(_client(server), warehouse, scope, windows[:1])
        before = _table_contents(warehouse)
        lock(warehouse.path)
        refused = subprocess.run(_child_command(server, warehouse.url, windows),
                                 capture_output=True, text=True, timeout=300)  # fmt: skip
        read_only.faults += 1
        read_only.runs += 2
        _refused(read_only, refused, "WarehouseError", "a run wrote to a read-only file")
        if _table_contents(warehouse) != before:
            read_only.problems.append("the read-only file changed")
        unlock(warehouse.path)
        read_only.runs += 1
        _sync_all(_client(server), warehouse, scope, windows)
        _tally(read_only, warehouse, expected)
    return read_only


@contextlib.contextmanager
def _read_only_place(
    folder: Path,
) -> Iterator[tuple[Path, Callable[[Path], None], Callable[[Path], None]]]:
    """A folder, and how to make a file in it read-only and writable again. Root writes
    through any file mode, so as root the folder is a small tmpfs remounted read-only;
    otherwise the file's mode is 0444."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        yield folder, lambda p: p.chmod(0o444), lambda p: p.chmod(0o600)
        return
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)

    def remount(mode: str) -> Callable[[Path], None]:
        return lambda _: subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)

    try:
        yield folder, remount("ro"), remount("rw")
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- the campaign -------------------------------------------------------------------------


def run(scale: int = 1, seed: int = 1, write: Callable[[str], None] = print) -> list[Outcome]:
    """Every scenario, a line each as it ends; the outcomes."""
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    with _folder() as root:
        for index, (name, faults) in enumerate(API_FAULTS.items()):
            folder = root / f"api-{index}"
            folder.mkdir()
            outcomes.append(api_fault(name, faults, scale, folder))
            write(outcomes[-1].line())
        (root / "kills").mkdir()
        outcomes.append(process_kills(scale, root / "kills", rng))
        write(outcomes[-1].line())
        (root / "warehouse").mkdir()
        for outcome in warehouse_faults(scale, root / "warehouse"):
            outcomes.append(outcome)
            write(outcome.line())
    return outcomes


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="polyai-campaign-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return _child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m devtools.campaign", description=__doc__)
    parser.add_argument("--scale", type=int, default=1, help="conversations and kills x N")
    parser.add_argument("--seed", type=int, default=1, help="where the kills fall")
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error("--scale must be at least 1")
    started = time.monotonic()
    outcomes = run(args.scale, args.seed)
    print(f"  ({time.monotonic() - started:.0f} s)")
    print(summary(outcomes))
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())

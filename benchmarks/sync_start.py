"""What a small `polyai-sync sync` costs in CPU, against importing Dagster alone.

Each round runs, one after the other in processes of their own: ``import dagster`` (the
framework's own floor), the real ``polyai-sync sync`` of two days of one scope against the
bundled simulator, and the same sync with the garbage-collector pause of
:func:`pipelines.sync_command.collector_paused` turned off. It prints each one's median CPU
seconds (user + system, the process and its children) and the ratios, measured side by side
in one run.

    uv run python -m benchmarks.sync_start             # 5 rounds
    uv run python -m benchmarks.sync_start --rounds 9
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from simulator import SimulatorConfig, SimulatorServer

SYNC = ["sync", "--start", "2026-11-19", "--end", "2026-11-20", "--channel", "voice"]
CONTENDERS = {
    "import dagster": ["-c", "import dagster"],
    "polyai-sync sync": ["-c", "import sys; from pipelines.cli import main; sys.exit(main())"],
    "polyai-sync sync, collector not paused": [
        "-c",
        "import gc, sys; gc.disable = gc.freeze = lambda: None; "
        "from pipelines.cli import main; sys.exit(main())",
    ],
}


def cpu_seconds(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """CPU seconds of one child process (and its own children), which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{args[1][:60]!r} failed:\n{done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5)")
    rounds = parser.parse_args(argv).rounds
    if rounds < 1:
        parser.error(f"--rounds must be at least 1, got {rounds}")
    config = SimulatorConfig(conversations_per_day=300, now=datetime(2026, 11, 23, 12, tzinfo=UTC))
    seconds: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    with SimulatorServer(config) as server:
        for _ in range(rounds):
            for name, code in CONTENDERS.items():
                with tempfile.TemporaryDirectory() as folder:
                    cwd = Path(folder)
                    env = {
                        **server.source_variables(),
                        "PATH": "/usr/bin:/bin",
                        "POLYAI_SYNC_START": "2026-11-01",
                        "WAREHOUSE_URL": f"duckdb:///{cwd / 'wh.duckdb'}",
                        "DAGSTER_HOME": str(cwd / "dagster_home"),
                    }
                    args = code + (SYNC if name != "import dagster" else [])
                    seconds[name].append(cpu_seconds(args, env, cwd))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    for name, value in median.items():
        print(f"{name:<40} {value:6.2f} s CPU (median of {rounds})")
    sync, unpaused = median["polyai-sync sync"], median["polyai-sync sync, collector not paused"]
    print(
        f"sync/import dagster {sync / median['import dagster']:.2f}x, "
        f"paused/not paused {sync / unpaused:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

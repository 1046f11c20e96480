"""Is the simulator fast enough never to be the bottleneck of what it feeds?

Three readers of the same window, one after the other in one run:

1. raw bytes: a client that only reads each page's bytes (and finds the cursor in them):
   the simulator's serving rate;
2. the PolyAI client: httpx plus JSON parsing, as a sync reads;
3. the whole window sync: client, normalization and DuckDB staging and publishing.

Rates are conversations per second; the ratio of (1) to (3) says how much headroom the
simulator has over the sync's ingest rate.

    uv run python -m benchmarks.source_rate [--conversations-per-day 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import httpx

from assets.window_sync import sync_window
from core import api_contract as api
from core.query import ConversationQuery
from core.windows import Scope, daily_window
from resources.polyai_api import PolyAIClient
from resources.warehouse import DuckDBWarehouse
from simulator import SimulatorConfig, SimulatorServer

SCOPE = Scope("live", "voice")
DAY = date(2026, 11, 18)  # a Wednesday


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def read_raw_bytes(server: SimulatorServer | RemoteSimulator) -> int:
    """Page through the window reading bytes only; the cursor is found without parsing."""
    window = daily_window(DAY)
    query = ConversationQuery.for_window(SCOPE, window)
    path = api.endpoint_path(server.config.account_id, server.config.project_id)
    conversations = 0
    with httpx.Client(
        base_url=server.base_url, headers={"x-api-key": server.config.api_key}
    ) as http:
        params = query.params()
        while True:
            body = http.get(path, params=params).content
            conversations += body.count(b'"account_id":')
            tail = body[body.rfind(b'"cursor":') :]
            cursor = json.loads(b"{" + tail)["cursor"] if tail else None
            if cursor is None:
                return conversations
            params = {**query.params(), api.P_CURSOR: cursor}


def read_with_client(server: SimulatorServer | RemoteSimulator) -> int:
    client = client_of(server)
    return sum(len(p.conversations) for p in client.iter_window(SCOPE, daily_window(DAY)))


def sync_into_duckdb(server: SimulatorServer | RemoteSimulator) -> int:
    with tempfile.TemporaryDirectory() as folder:
        warehouse = DuckDBWarehouse(url=f"duckdb:///{Path(folder) / 'bench.duckdb'}")
        result = sync_window(client_of(server), warehouse, SCOPE, daily_window(DAY))
        return result.rows["conversations"]


def client_of(server: SimulatorServer | RemoteSimulator) -> PolyAIClient:
    c = server.config
    return PolyAIClient(
        base_url=server.base_url,
        api_key=c.api_key,
        account_id=c.account_id,
        project_id=c.project_id,
    )


def best_rate(reader: Callable[[RemoteSimulator], int], server: RemoteSimulator, repeat: int):
    best = 0.0
    count = 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = reader(server)
        best = max(best, count / (time.perf_counter() - started))
    return count, best


def serve(config: SimulatorConfig, port: int) -> None:
    """The simulator in a process of its own, so readers do not share its interpreter lock."""
    SimulatorServer(config, port=port).serve_forever()


class RemoteSimulator:
    """The parts of a SimulatorServer the readers use, for one running in another process."""

    def __init__(self, config: SimulatorConfig, port: int) -> None:
        self.config = config
        self.base_url = f"http://127.0.0.1:{port}"


def wait_until_serving(base_url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(base_url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"the simulator did not start on {base_url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations-per-day", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per reader; the best counts")
    args = parser.parse_args()
    config = SimulatorConfig(
        conversations_per_day=args.conversations_per_day, now=datetime(2026, 11, 23, tzinfo=UTC)
    )
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(config, port), daemon=True
    )
    process.start()
    try:
        server = RemoteSimulator(config, port)
        wait_until_serving(server.base_url)
        read_raw_bytes(server)  # warm the day index cache: measure serving, not indexing
        rows = []
        for name, reader in (
            ("simulator serving (raw bytes)", read_raw_bytes),
            ("PolyAI client (httpx + JSON)", read_with_client),
            ("window sync into DuckDB", sync_into_duckdb),
        ):
            count, rate = best_rate(reader, server, args.repeat)
            rows.append((name, count, rate))
    finally:
        process.terminate()
        process.join(timeout=10)
    print(f"One {SCOPE.key} window of {rows[0][1]} conversations, best of {args.repeat}:")
    for name, _count, rate in rows:
        print(f"  {name:<32}{rate:>10,.0f} conversations/s")
    print(f"  simulator / sync ingest ratio: {rows[0][2] / rows[2][2]:.1f}x")


if __name__ == "__main__":
    main()

"""A deployment of polyai-sync against :mod:`tests.hostile.server`, driven as a user drives it:
the real ``polyai-sync sync`` in a process of its own, a Dagster home, a warehouse (a DuckDB file
or a PostgreSQL database), a lake folder."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from core import schema
from resources.polyai_api import PolyAIClient
from resources.warehouse import Warehouse, warehouse_for
from tests.hostile.server import ACCOUNT, KEY, PROJECT, HostileAPI

CLI = str(Path(sys.executable).parent / "polyai-sync")
VOLATILE = {"load_id", "loaded_at", "computed_at", "quarantined_at"}
"""Columns a re-sync rewrites even when the data is the same."""


@dataclass
class Deployment:
    api: HostileAPI
    base_url: str
    folder: Path
    warehouse_url: str

    @property
    def lake(self) -> Path:
        return self.folder / "lake"

    @property
    def dagster_home(self) -> Path:
        return self.folder / "dagster_home"

    def env(self, **changes: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POLYAI_", "WAREHOUSE_"))}
        env.update(
            POLYAI_BASE_URL=self.base_url,
            POLYAI_API_KEY=KEY,
            POLYAI_ACCOUNT_ID=ACCOUNT,
            POLYAI_PROJECT_ID=PROJECT,
            POLYAI_SYNC_START="2026-01-01",
            POLYAI_ENVIRONMENTS="live",
            POLYAI_CHANNELS="voice,chat",
            POLYAI_QA_SAMPLE_SIZE="0",
            WAREHOUSE_URL=self.warehouse_url,
            LAKE_URL=str(self.lake),
            DAGSTER_HOME=str(self.dagster_home),
            # Off unless a test turns them on: these cases are about the sync (see
            # tests/pipelines/cli_runs.py clean_env).
            POLYAI_DBT_MODELS="0",
        )
        env.update(changes)
        return env

    def sync(
        self, first: str, last: str | None = None, *args: str, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``polyai-sync sync --start FIRST --end LAST ARGS``, as a user runs it."""
        return subprocess.run(
            [CLI, "sync", "--start", first, "--end", last or first, *args],
            env=self.env(**env),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def client(self, **options: Any) -> PolyAIClient:
        """The API client a sync of this deployment uses (with ``options``), for what a test
        drives in process."""
        return PolyAIClient(
            base_url=self.base_url, api_key=KEY, account_id=ACCOUNT, project_id=PROJECT, **options
        )

    def warehouse(self) -> Warehouse:
        return warehouse_for(self.warehouse_url)

    def rows(self, table: str, where: str = "TRUE") -> list[dict[str, Any]]:
        frame = self.warehouse().read_table(table, where)
        return frame.astype(object).where(frame.notna(), None).to_dict("records")

    def ids(self, where: str = "TRUE") -> list[str]:
        return sorted(r["id"] for r in self.rows("conversations", where))

    def lake_ids(self) -> list[str]:
        """Every conversation id in the lake's conversation files, as often as it is there."""
        files = sorted((self.lake / "conversations").rglob("*.parquet"))
        return sorted(
            i for path in files for i in pq.read_table(path, columns=["id"])["id"].to_pylist()
        )

    def state(self) -> dict[str, Any]:
        """Every table's rows and every lake file's rows, without the columns a re-sync
        rewrites anyway: what "nothing else changed" compares."""
        tables = {
            table.name: sorted(
                repr({k: v for k, v in row.items() if k not in VOLATILE})
                for row in self.rows(table.name)
            )
            for table in schema.metadata.sorted_tables
            if table.name not in ("sync_state", "quarantine")
        }
        files = {
            str(path.relative_to(self.lake)): sorted(
                repr({k: v for k, v in row.items() if k not in VOLATILE})
                for row in pq.read_table(path).to_pylist()
            )
            for path in sorted(self.lake.rglob("*.parquet"))
        }
        return {"tables": tables, "lake": files}

    def assert_no_secret(
        self, *outputs: subprocess.CompletedProcess[str], secrets: tuple[str, ...] = (KEY,)
    ) -> None:
        """No secret in what the runs printed, the warehouse, the lake or the Dagster home."""
        texts = [done.stdout + done.stderr for done in outputs]
        places = [self.lake, self.dagster_home]
        if self.warehouse_url.startswith("duckdb"):
            places.append(Path(self.warehouse_url.removeprefix("duckdb:///")).parent)
        else:
            texts.append(repr(self.state()) + repr(self.rows("quarantine")))
        for place in places:
            for path in place.rglob("*"):
                if path.is_file():
                    texts.append(path.read_bytes().decode("utf-8", errors="replace"))
        for secret in secrets:
            assert not any(secret in text for text in texts), f"{secret!r} was found"


def window_state(state: dict[str, Any], day: str, scope: str) -> dict[str, Any]:
    """The part of :meth:`Deployment.state` that is one (day, scope)'s: its lake files."""
    environment, channel = scope.split(".")
    marker = f"environment={environment}/channel={channel}/date={day}"
    return {path: rows for path, rows in state["lake"].items() if marker in path}

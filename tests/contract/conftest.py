"""Fixtures for the contract suite: the client against simulators with chosen settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from resources.polyai_api import PolyAIClient
from simulator import FaultConfig, SimulatorConfig, SimulatorServer

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

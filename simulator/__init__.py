"""A bundled, deterministic stand-in for the PolyAI Conversations API v3.

It serves ``GET /v3/{account_id}/{project_id}/conversations`` over real HTTP, so that the demo,
the tests and the benchmarks exercise the same client code a production sync does.
"""

from simulator.data import Dataset, SimulatorConfig
from simulator.faults import FaultConfig
from simulator.server import SimulatorServer

__all__ = ["Dataset", "FaultConfig", "SimulatorConfig", "SimulatorServer"]

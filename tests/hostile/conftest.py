"""A hostile API on loopback and a deployment of polyai-sync pointed at it, per test; the
warehouse on DuckDB or PostgreSQL (``deployment`` is parametrized over both where a test asks
for ``engine``)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hostile.harness import Deployment
from tests.hostile.server import HostileAPI, serving


@pytest.fixture
def api() -> HostileAPI:
    return HostileAPI()


@pytest.fixture
def duckdb_deployment(api: HostileAPI, tmp_path: Path) -> Iterator[Deployment]:
    with serving(api) as url:
        yield Deployment(api, url, tmp_path, f"duckdb:///{tmp_path / 'wh' / 'w.duckdb'}")


@pytest.fixture(params=["duckdb", "postgresql"])
def deployment(
    request: pytest.FixtureRequest, api: HostileAPI, tmp_path: Path
) -> Iterator[Deployment]:
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'wh' / 'w.duckdb'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with serving(api) as base_url:
        yield Deployment(api, base_url, tmp_path, url)

"""The dbt project (``dbt_project/``) as this project runs it: where dbt builds (the warehouse's
own file or database, from ``WAREHOUSE_URL``), the manifest Dagster reads its models from, and
a build of some windows.

dbt reads its connection from ``dbt_project/profiles.yml``, whose values are the
``POLYAI_DBT_*`` variables :func:`profile_env` derives from the warehouse: Dagster's dbt step,
``polyai-sync dbt`` and an erasure set them for the dbt process they start, so one setting
(``WAREHOUSE_URL``) says where everything goes.

The manifest (``dbt_project/target/manifest.json``) is what ``dbt parse`` writes; the code
location needs it to declare the models as assets. :func:`manifest` parses the project when
the manifest is missing or was parsed from other files than the project now holds (a hash of
them, kept beside it), once, under a file lock: the first load after a change takes a few
seconds, every later one none.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from core.env import Env
from core.errors import PolyAISyncError
from core.windows import Scope, Window
from resources.warehouse import Warehouse

PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
"""The dbt project, beside the packages (its ``profiles.yml`` too)."""
TARGET_DIR = PROJECT_DIR / "target"
MANIFEST = TARGET_DIR / "manifest.json"
_PARSED_FROM = TARGET_DIR / "polyai-sync.parsed-from"
"""The hash of the project files the manifest was parsed from."""
WINDOWS_VAR = "polyai_windows"
"""The dbt variable listing the windows a build rebuilds (``dbt_project/macros/windows.sql``)."""
KPI_SELECTOR = "tag:kpis"
"""The models that hold per-window KPIs."""


class DbtBuildError(PolyAISyncError):
    """A dbt command run outside Dagster failed; its output is in the message."""


def dbt_executable() -> str:
    """The ``dbt`` installed beside this Python (the virtual environment's), else the PATH's."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else "dbt"


def profile_env(warehouse: Warehouse) -> dict[str, str]:
    """The ``POLYAI_DBT_*`` variables that point ``profiles.yml`` at ``warehouse``."""
    env = {"POLYAI_DBT_TARGET": warehouse.engine, "POLYAI_DBT_SCHEMA": warehouse.schema_name}
    if warehouse.engine == "duckdb":
        if warehouse.catalog == warehouse.schema_name:  # type: ignore[attr-defined]
            raise DbtBuildError(
                f"dbt cannot build its views in {warehouse.path}: DuckDB names the file's "  # type: ignore[attr-defined]
                f"catalog {warehouse.schema_name!r}, as its schema ({Env.WAREHOUSE_SCHEMA}), "
                "and then refuses to bind a view that reads the schema's tables (DuckDB 2.0). "
                f"Give the file another name, set {Env.WAREHOUSE_SCHEMA} to another schema, or "
                f"set {Env.POLYAI_DBT_MODELS}=false"
            )
        env["POLYAI_DBT_DUCKDB_PATH"] = str(Path(warehouse.path).resolve())  # type: ignore[attr-defined]
        return env
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(warehouse.conninfo)  # type: ignore[attr-defined]
    for name, key in (
        ("HOST", "host"),
        ("PORT", "port"),
        ("USER", "user"),
        ("PASSWORD", "password"),
        ("DATABASE", "dbname"),
    ):
        if parts.get(key) is not None:
            env[f"POLYAI_DBT_PG_{name}"] = str(parts[key])
    return env


@contextlib.contextmanager
def profile_environment(warehouse: Warehouse) -> Iterator[None]:
    """``os.environ`` with :func:`profile_env` set, for the dbt processes started inside (the
    dbt resource passes the environment on); restored after."""
    env = profile_env(warehouse)
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


PARTIAL_PARSE = "partial_parse.msgpack"
KEPT_PARTIAL_PARSES = 8


@contextlib.contextmanager
def build_target(warehouse: Warehouse, label: str) -> Iterator[Path]:
    """A target folder of one build's own (dbt's artifacts and log; two builds never share
    one), removed after it. dbt parses the project again in a new folder unless it finds the
    partial parse of a build against the same profile there (1.0-1.3 s of 4.7-6.0 s a build,
    measured), so the folder starts with the last one for this warehouse, and a build that
    succeeds leaves its own for the next."""
    env = {k: v for k, v in profile_env(warehouse).items() if k != "POLYAI_DBT_PG_PASSWORD"}
    key = hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:16]
    kept = TARGET_DIR / "partial" / f"{key}.msgpack"
    folder = TARGET_DIR / "builds" / f"{label}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    try:
        with contextlib.suppress(FileNotFoundError):
            shutil.copyfile(kept, folder / PARTIAL_PARSE)
        yield folder
        if (folder / PARTIAL_PARSE).exists():
            kept.parent.mkdir(exist_ok=True)
            spare = kept.with_suffix(f".{folder.name}")
            shutil.copyfile(folder / PARTIAL_PARSE, spare)
            os.replace(spare, kept)  # whole, for a build starting meanwhile
            _keep_newest(kept.parent, KEPT_PARTIAL_PARSES)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _keep_newest(folder: Path, count: int) -> None:
    """Remove all but the ``count`` newest files of ``folder`` (one per warehouse: a machine
    that syncs into many, tests, keeps a few)."""
    files = sorted(folder.glob("*.msgpack"), key=lambda f: f.stat().st_mtime, reverse=True)
    for stale in files[count:]:
        stale.unlink(missing_ok=True)


def windows_vars(windows: Sequence[tuple[Scope, Window]]) -> str:
    """``--vars`` for a build of exactly these windows."""
    listed = [
        [scope.environment, scope.channel, window.start.isoformat()] for scope, window in windows
    ]
    return json.dumps({WINDOWS_VAR: listed})


def project_hash() -> str:
    """A hash of every file dbt parses (models, macros, tests, the project and profile)."""
    digest = hashlib.sha256()
    files = [PROJECT_DIR / "dbt_project.yml", PROJECT_DIR / "profiles.yml"]
    for folder in ("models", "macros", "tests"):
        files.extend(sorted((PROJECT_DIR / folder).rglob("*")))
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(PROJECT_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def manifest() -> Path:
    """The project's manifest, parsed first if it is missing or stale (see the module)."""
    wanted = project_hash()
    if _parsed_from() == wanted and MANIFEST.exists():
        return MANIFEST
    TARGET_DIR.mkdir(parents=True, exist_ok=True)
    with open(TARGET_DIR / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be parsing it right now
        if _parsed_from() != wanted or not MANIFEST.exists():
            run_dbt(["parse", "--quiet"], env={})
            _PARSED_FROM.write_text(wanted)
    return MANIFEST


def _parsed_from() -> str | None:
    try:
        return _PARSED_FROM.read_text().strip()
    except FileNotFoundError:
        return None


def run_dbt(args: Sequence[str], env: Mapping[str, str], target: Path | None = None) -> str:
    """Run ``dbt <args>`` in the project with ``env`` added to this process's environment
    (and its artifacts in ``target``); its output, or :class:`DbtBuildError` with it."""
    paths = {"DBT_TARGET_PATH": str(target), "DBT_LOG_PATH": str(target)} if target else {}
    done = subprocess.run(
        [dbt_executable(), *args],
        cwd=PROJECT_DIR,
        env={**os.environ, "DBT_PROFILES_DIR": str(PROJECT_DIR), **paths, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise DbtBuildError(f"dbt {' '.join(args[:1])} failed (exit {done.returncode}):\n{output}")
    return output


def rebuild_kpis(warehouse: Warehouse, windows: Sequence[tuple[Scope, Window]]) -> None:
    """Rebuild the KPI models for exactly these windows, outside Dagster (an erasure, a test)."""
    if not windows:
        return
    warehouse.ensure_schema()  # the KPI tables, with their keys, before dbt fills them
    with build_target(warehouse, "kpis") as target:
        run_dbt(
            ["run", "--quiet", "--select", f"+{KPI_SELECTOR}", "--vars", windows_vars(windows)],
            profile_env(warehouse),
            target,
        )

"""The Dagster instance that command-line runs are recorded in.

``DAGSTER_HOME`` wins when it is set; otherwise a project-local folder is used, so that
``polyai-sync ui`` (which points ``dagster dev`` at the same folder) shows every run the command
line started.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dagster import DagsterInstance

# Telemetry off (many deployments reach no telemetry endpoint) and the sync's pool limits.
DAGSTER_YAML = Path(__file__).with_name("dagster.yaml")


def dagster_home(default: Path) -> Path:
    """The instance folder: ``$DAGSTER_HOME`` if set, else ``default``; created if missing.

    Also exports ``DAGSTER_HOME`` so child processes (``dagster dev``) use the same folder.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or default).absolute()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML.read_text())
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def get_instance(default_home: Path) -> DagsterInstance:
    """The instance at ``dagster_home(default_home)``, its storage created if it is new.

    Two commands started at once on a new instance would both create its SQLite storage and
    one would fail; a file lock lets the first create it and the second find it made.
    """
    home = dagster_home(default_home)
    with (home / ".polyai-sync.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            instance = DagsterInstance.get()
            instance.get_runs(limit=1)  # touches (and so creates) the run storage
            return instance
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

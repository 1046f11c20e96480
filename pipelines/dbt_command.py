"""``polyai-sync dbt <dbt arguments>``: dbt itself, in the project's dbt project
(``dbt_project/``), pointed at the warehouse ``WAREHOUSE_URL`` and ``WAREHOUSE_SCHEMA`` name
(:func:`resources.dbt.profile_env`), so that a build by hand goes where the sync's went:
``polyai-sync dbt build``, ``polyai-sync dbt docs generate``, ``polyai-sync dbt test``. With no
``--vars``, the KPI models rebuild every window."""

from __future__ import annotations

import argparse
import os
import subprocess
from typing import Any

from core.config import Settings

_WRITES = {"build", "run", "seed", "snapshot"}
"""dbt commands that write the warehouse: its tables are created first (the KPI tables with
their keys), as the sync would."""


def add_dbt_parser(commands: Any) -> None:
    """The ``dbt`` sub-command, on the CLI's sub-parsers."""
    dbt = commands.add_parser(
        "dbt",
        help="run dbt in the project's dbt project, on the configured warehouse",
        description=__doc__,
        add_help=False,  # `polyai-sync dbt --help` is dbt's
    )
    dbt.add_argument("dbt_args", nargs=argparse.REMAINDER, help="what to pass to dbt")
    dbt.set_defaults(func=cmd_dbt)


def cmd_dbt(args: argparse.Namespace) -> int:
    from resources.dbt import PROJECT_DIR, dbt_executable, profile_env
    from resources.warehouse import warehouse_for

    settings = Settings.from_env(os.environ)
    warehouse = warehouse_for(settings.warehouse_url, settings.warehouse_schema)
    if _WRITES & set(args.dbt_args[:1]):
        warehouse.ensure_schema()
    env = {**os.environ, "DBT_PROFILES_DIR": str(PROJECT_DIR), **profile_env(warehouse)}
    try:
        return subprocess.call([dbt_executable(), *args.dbt_args], cwd=PROJECT_DIR, env=env)
    except KeyboardInterrupt:
        return 130

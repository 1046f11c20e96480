"""A snapshot of the code location's graph under default settings: asset keys, their groups,
dependencies and partitions, the checks, jobs, schedules and sensors. A change to the graph
then shows up in review as a change to ``definitions_snapshot.json``; to accept one, run
``POLYAI_UPDATE_SNAPSHOT=1 uv run pytest tests/pipelines/test_definitions_snapshot.py``."""

import json
import os
from pathlib import Path
from typing import Any

from dagster import Definitions

from core.config import Settings
from pipelines.definitions import build_definitions

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def _partitions(definition: Any) -> Any:
    if definition is None:
        return None
    if hasattr(definition, "partitions_defs"):  # several dimensions
        return {d.name: _partitions(d.partitions_def) for d in definition.partitions_defs}
    if hasattr(definition, "cron_schedule"):  # time windows: not their keys, which grow daily
        return {"cron": definition.cron_schedule, "start": str(definition.start)}
    return definition.get_partition_keys()


def describe(defs: Definitions) -> dict[str, Any]:
    graph = defs.resolve_asset_graph()
    repository = defs.get_repository_def()
    return {
        "assets": {
            spec.key.to_user_string(): {
                "group": spec.group_name,
                "deps": sorted(dep.asset_key.to_user_string() for dep in spec.deps),
                "kinds": sorted(spec.kinds),
                "partitions": _partitions(spec.partitions_def),
                "automated": spec.automation_condition is not None,
            }
            for spec in sorted(defs.resolve_all_asset_specs(), key=lambda s: s.key)
        },
        "checks": sorted(
            f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys
        ),
        "jobs": {
            job.name: sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
            for job in repository.get_all_jobs()
            if not job.name.startswith("__")
        },
        "schedules": {
            s.name: {"cron": s.cron_schedule, "job": s.job_name} for s in repository.schedule_defs
        },
        "sensors": sorted(sensor.name for sensor in repository.sensor_defs),
    }


def test_the_graph_is_what_the_snapshot_says() -> None:
    actual = describe(build_definitions(Settings.from_env({})))
    if os.environ.get("POLYAI_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert actual == json.loads(SNAPSHOT.read_text()), (
        f"the definitions changed; if that is intended, regenerate {SNAPSHOT.name} "
        "(see this module's docstring) and review its diff"
    )

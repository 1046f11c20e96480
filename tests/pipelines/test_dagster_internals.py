"""Dagster's internals stay behind one door, and that door fails loudly on a Dagster it was not
checked against: the version is in the range ``pipelines/dagster_internals.py`` states, each
name it re-exports exists with the call shape the project uses, and no other module of the
project imports ``dagster._*``."""

import ast
import importlib
import inspect
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster
import pytest
from dagster import DagsterInstance, DagsterRun, in_process_executor

from pipelines import dagster_internals as internals
from pipelines.run_launcher import InProcessRunLauncher, LocalRunLauncher
from pipelines.run_workers import run_worker_executor
from tests import python_source
from tests.pipelines.cli_runs import clean_env

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "assets", "resources", "sync", "core")
ADAPTER = "pipelines/dagster_internals.py"
RECHECK = (
    "re-read every name in pipelines/dagster_internals.py (its docstring says what each is "
    "for) against this Dagster's source, then widen CHECKED_VERSIONS there"
)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3])


def test_the_installed_dagster_is_one_the_adapter_was_checked_against() -> None:
    first, last = internals.CHECKED_VERSIONS
    installed = dagster.__version__
    assert _version(first) <= _version(installed) <= _version(last), (
        f"Dagster {installed} is installed; pipelines/dagster_internals.py was checked against "
        f"{first} to {last} only: {RECHECK}."
    )


@pytest.mark.parametrize("name", internals.__all__)
def test_every_re_exported_internal_exists(name: str) -> None:
    try:
        getattr(internals, name)
    except (AttributeError, ImportError) as error:
        pytest.fail(
            f"Dagster {dagster.__version__} has no {name} where expected ({error}): {RECHECK}"
        )


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


BACKFILL_KEYWORDS = {
    "backfill_id", "asset_graph", "partition_names", "asset_selection", "backfill_timestamp",
    "tags", "dynamic_partitions_store", "all_partitions", "title", "description", "run_config",
}  # fmt: skip
# What the project passes, by name (keywords) or by position (the first parameters, in order).
CALL_SHAPES = {
    "InstanceRef.from_dir": (internals.InstanceRef.from_dir, ["base_dir"], {"overrides"}),
    "PartitionBackfill.from_asset_partitions": (
        internals.PartitionBackfill.from_asset_partitions,
        [],
        BACKFILL_KEYWORDS,
    ),
    "InProcessCodeLocationOrigin": (
        internals.InProcessCodeLocationOrigin,
        ["loadable_target_origin"],
        {"location_name"},
    ),
    "WorkspaceProcessContext": (
        internals.WorkspaceProcessContext,
        ["instance", "workspace_load_target"],
        set(),
    ),
    "InProcessWorkspaceLoadTarget": (internals.InProcessWorkspaceLoadTarget, ["origin"], set()),
    "execute_backfill_jobs": (
        internals.execute_backfill_jobs,
        ["workspace_process_context", "logger", "backfill_jobs"],
        set(),
    ),
    "execute_run": (internals.execute_run, ["job", "dagster_run", "instance"], set()),
    "recon_job_from_origin": (internals.recon_job_from_origin, ["origin"], set()),
    "CheckRunHealthResult": (internals.CheckRunHealthResult, ["status", "msg"], set()),
    "RunLauncher.check_run_worker_health": (
        internals.RunLauncher.check_run_worker_health,
        ["self", "run"],
        set(),
    ),
    "RunLauncher.launch_run": (internals.RunLauncher.launch_run, ["self", "context"], set()),
    "RunLauncher.terminate": (internals.RunLauncher.terminate, ["self", "run_id"], set()),
    "make_new_backfill_id": (internals.make_new_backfill_id, [], set()),
}


@pytest.mark.parametrize("name", CALL_SHAPES)
def test_every_internal_we_call_takes_the_arguments_we_pass(name: str) -> None:
    function, positional, keywords = CALL_SHAPES[name]
    parameters = _parameters(function)
    assert parameters[: len(positional)] == positional, (
        f"{name}{inspect.signature(function)} no longer starts with {positional}: {RECHECK}."
    )
    assert keywords <= set(parameters), (
        f"{name}{inspect.signature(function)} lost {sorted(keywords - set(parameters))}: {RECHECK}."
    )


def test_the_records_we_build_take_the_fields_we_give() -> None:
    origin = internals.LoadableTargetOrigin(
        executable_path=sys.executable, module_name="pipelines.definitions", working_directory="."
    )
    assert origin.module_name == "pipelines.definitions"
    status = internals.BulkActionStatus.REQUESTED
    assert internals.BulkActionsFilter(statuses=[status]).statuses == [status]
    data = internals.ConfigurableClassData("pipelines.run_launcher", "InProcessRunLauncher", "{}")
    assert data.module_name == "pipelines.run_launcher"
    backfill_id = internals.make_new_backfill_id()
    assert isinstance(backfill_id, str) and backfill_id
    assert {"dagster_run", "job_code_origin"} <= set(dir(internals.LaunchRunContext))


def test_the_enum_members_we_use_exist() -> None:
    assert {
        "REQUESTED", "COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED",
        "CANCELING",
    } <= set(internals.BulkActionStatus.__members__), RECHECK  # fmt: skip
    assert {"RUNNING", "FAILED"} <= set(internals.WorkerStatus.__members__), RECHECK


def test_the_run_tags_keep_the_values_stored_on_every_run() -> None:
    """Runs already in an instance carry these tags: a new value would lose them."""
    assert internals.BACKFILL_ID_TAG == "dagster/backfill"
    assert internals.PARTITION_NAME_TAG == "dagster/partition"
    assert internals.ASSET_PARTITION_RANGE_START_TAG == "dagster/asset_partition_range_start"
    assert internals.ASSET_PARTITION_RANGE_END_TAG == "dagster/asset_partition_range_end"
    assert internals.HIDDEN_TAG_PREFIX == ".dagster/"


def test_our_run_launchers_implement_everything_dagster_requires() -> None:
    """A new abstract method on RunLauncher or ConfigurableClass would make Dagster fail to
    load the instance; the members we override must still be the ones Dagster calls."""
    assert internals.RunLauncher.__abstractmethods__ <= {"launch_run", "terminate"}, RECHECK
    assert internals.ConfigurableClass.__abstractmethods__ <= {
        "inst_data",
        "config_type",
        "from_config_value",
    }, RECHECK
    for member in ("supports_check_run_worker_health", "check_run_worker_health", "_instance"):
        assert hasattr(internals.RunLauncher, member), f"RunLauncher.{member}: {RECHECK}"
    launcher = InProcessRunLauncher.from_config_value(
        internals.ConfigurableClassData("pipelines.run_launcher", "InProcessRunLauncher", "{}"), {}
    )
    assert launcher.inst_data is not None
    assert LocalRunLauncher().supports_check_run_worker_health


@pytest.mark.parametrize(
    "override", [internals.DEFAULT_RUN_COORDINATOR, internals.NOOP_COMPUTE_LOG_MANAGER]
)
def test_the_instance_overrides_name_classes_that_exist(override: dict[str, str]) -> None:
    loaded = getattr(importlib.import_module(override["module"]), override["class"], None)
    assert loaded is not None, f"{override}: {RECHECK}"
    assert issubclass(loaded, internals.ConfigurableClass)


def test_a_step_waiting_for_a_pool_slot_sleeps_until_its_next_check() -> None:
    """The fix reads two private attributes of InstanceConcurrencyContext; run_workers applies
    it when the code location is imported."""
    with DagsterInstance.ephemeral() as instance:
        run = DagsterRun(job_name="polyai_sync", run_id=str(uuid.uuid4()))
        context = internals.InstanceConcurrencyContext(instance, run)
        for private in ("_pending_claims", "_pending_timeouts"):
            assert hasattr(context, private), f"InstanceConcurrencyContext.{private}: {RECHECK}"
        context._pending_claims.add("step")
        context._pending_timeouts["step"] = time.time() + 5
        assert 4 < context.interval_to_next_pending_claim_check() <= 5


def test_the_run_worker_executor_is_dagsters_in_process_one_with_its_config() -> None:
    """Built from the public ``in_process_executor``, in place of the internals it needed."""
    assert run_worker_executor.config_schema is in_process_executor.config_schema
    assert in_process_executor.executor_creation_fn is not None


def private_dagster_uses(path: Path) -> list[str]:
    """Where ``path`` reaches into ``dagster._*``: an import (at any depth, lazy ones too), or
    a string naming such a module (``importlib``, an instance override)."""
    found = []
    for node in ast.walk(python_source.parse(path)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
            if node.module == "dagster":
                names += [f"dagster.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        else:
            continue
        found += [f"{node.lineno}: {n}" for n in names if n.startswith("dagster._")]
    return found


def test_only_the_adapter_reaches_into_dagster_internals() -> None:
    users = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if private_dagster_uses(path)
    }
    assert users == {ADAPTER}, "import Dagster's internals through pipelines/dagster_internals.py"


def test_the_scan_sees_private_imports() -> None:
    """The check above can fail: it finds the adapter's own imports, lazy ones included."""
    found = "\n".join(private_dagster_uses(ROOT / ADAPTER))
    for module in (
        "dagster._core.storage.tags",
        "dagster._core.launcher",
        "dagster._daemon.backfill",  # imported on first use
        "dagster._core.run_coordinator",  # named in an instance override
    ):
        assert module in found


def test_the_scan_sees_every_form_of_private_import(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text(
        "import dagster._check\n"
        "from dagster import _check\n"
        "def f():\n"
        "    from dagster._core.errors import DagsterError\n"
        "    return importlib.import_module('dagster._utils')\n"
    )
    assert [use.split(": ")[0] for use in private_dagster_uses(module)] == ["1", "2", "4", "5"]


def test_the_lazily_imported_names_are_the_ones_the_code_location_never_needs() -> None:
    """``dagster._daemon.backfill`` (~1.5 s to import) stays out of the code location."""
    code = "import pipelines.definitions, pipelines.run_launcher, sys; " + (
        "print(sorted(m for m in sys.modules if m.startswith(('dagster._daemon', "
        "'dagster._core.execution.backfill', 'dagster._core.workspace.context'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

"""A run whose process is gone is told from a live one, marked failed and its slot freed."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus

from core.names import POOL
from pipelines.instance import get_instance
from pipelines.run_launcher import LocalRunLauncher
from pipelines.run_workers import (
    WORKER_TAG,
    Worker,
    recover_dead_runs,
    this_process,
    worker_state,
)


def _process_that_exited() -> Worker:
    child = subprocess.Popen(["sleep", "30"])
    stat = Path(f"/proc/{child.pid}/stat").read_text()
    ticks = int(stat.rsplit(")", 1)[1].split()[19])
    child.kill()
    child.wait()
    me = this_process()
    return Worker(me.host, me.boot_id, child.pid, ticks)


def _run(instance: DagsterInstance, worker: Worker, status=DagsterRunStatus.STARTED) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(
        DagsterRun(
            job_name="polyai_sync", run_id=run_id, status=status, tags={WORKER_TAG: worker.tag()}
        )
    )
    return run_id


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DagsterInstance]:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    # the project's dagster.yaml: a pool of 1; disposed after the test (its storage closed)
    with get_instance(tmp_path / "dagster_home") as instance:
        assert instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
        yield instance


def test_a_dead_run_holding_the_pool_is_failed_and_its_slot_freed(
    instance: DagsterInstance,
) -> None:
    storage = instance.event_log_storage
    dead = _run(instance, _process_that_exited())
    alive = _run(instance, this_process())
    assert storage.claim_concurrency_slot(POOL, dead, "polyai_conversations_sync").is_claimed
    # The live run waits behind it, as a second sync did for 20 minutes before this fix.
    assert not storage.claim_concurrency_slot(POOL, alive, "polyai_conversations_sync").is_claimed

    recovered = recover_dead_runs(instance)

    assert [(r.run_id, r.status) for r in recovered] == [(dead, DagsterRunStatus.FAILURE)]
    assert instance.get_run_by_id(dead).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(alive).status == DagsterRunStatus.STARTED
    assert dead not in {s.run_id for s in storage.get_concurrency_info(POOL).claimed_slots}
    assert storage.claim_concurrency_slot(POOL, alive, "polyai_conversations_sync").is_claimed
    assert recover_dead_runs(instance) == []


def test_a_run_being_canceled_whose_process_is_gone_ends_canceled(
    instance: DagsterInstance,
) -> None:
    run_id = _run(instance, _process_that_exited(), DagsterRunStatus.CANCELING)
    (recovered,) = recover_dead_runs(instance)
    assert recovered.status == DagsterRunStatus.CANCELED
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.CANCELED


@pytest.mark.parametrize(
    ("change", "state"),
    [
        ({}, "alive"),
        ({"start_ticks": 1}, "gone"),  # the pid is another process's now
        ({"boot_id": "another-boot"}, "gone"),  # the machine restarted
        ({"host": "another-host"}, "unknown"),  # not ours to judge
    ],
)
def test_worker_state_tells_a_reused_pid_a_reboot_and_another_machine(change, state) -> None:
    worker = this_process()
    tag = Worker(**{**worker.__dict__, **change}).tag()
    assert worker_state(DagsterRun(job_name="j", tags={WORKER_TAG: tag})) == state
    assert worker_state(DagsterRun(job_name="j")) == "unknown"  # untagged: never judged


def test_the_daemons_launcher_reports_a_gone_worker_as_failed(instance: DagsterInstance) -> None:
    launcher = LocalRunLauncher()
    assert launcher.supports_check_run_worker_health
    dead = DagsterRun(job_name="j", tags={WORKER_TAG: _process_that_exited().tag()})
    live = DagsterRun(job_name="j", tags={WORKER_TAG: this_process().tag()})
    assert launcher.check_run_worker_health(dead).status.value == "FAILED"
    assert (
        f"pid {Worker.parse(dead.tags[WORKER_TAG]).pid}"
        in launcher.check_run_worker_health(dead).msg
    )
    assert launcher.check_run_worker_health(live).status.value == "RUNNING"
    assert os.getpid() == this_process().pid


def test_under_the_daemon_run_monitoring_fails_a_dead_run_and_frees_its_slot(
    instance: DagsterInstance, tmp_path: Path
) -> None:
    """The real dagster-daemon on the project's dagster.yaml (the instance `polyai-sync ui`
    and `dagster dev` use): a run whose process is gone is failed and its slot given back,
    with no polyai-sync command involved."""
    storage = instance.event_log_storage
    dead = _run(instance, _process_that_exited())
    assert storage.claim_concurrency_slot(POOL, dead, "polyai_conversations_sync").is_claimed
    root = Path(__file__).resolve().parents[2]
    # The project's settings, but polled every 2 s rather than 30: what is tested is what a
    # poll does, not how long it waits.
    settings = tmp_path / "dagster_home" / "dagster.yaml"
    polled = settings.read_text().replace("poll_interval_seconds: 30", "poll_interval_seconds: 2")
    assert polled != settings.read_text()
    settings.write_text(polled)
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    daemon = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-daemon"),
            "run",
            "-w",
            str(root / "workspace.yaml"),
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120  # a poll, then 10 s to free the slot
        while True:
            run = instance.get_run_by_id(dead)
            claimed = {s.run_id for s in storage.get_concurrency_info(POOL).claimed_slots}
            if run.status == DagsterRunStatus.FAILURE and dead not in claimed:
                break
            assert daemon.poll() is None, "the daemon exited"
            assert time.monotonic() < deadline, (run.status, claimed)
            time.sleep(1)
        failure = instance.all_logs(dead, of_type=DagsterEventType.RUN_FAILURE)
        assert "is gone" in failure[0].dagster_event.message
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)


def test_a_run_recorded_before_the_identity_tags_were_hidden_is_still_recovered(
    instance: DagsterInstance,
) -> None:
    """Runs of an instance written by an earlier version carry ``polyai-sync/worker``."""
    run_id = str(uuid.uuid4())
    dead = _process_that_exited()
    instance.add_run(
        DagsterRun(
            job_name="polyai_sync",
            run_id=run_id,
            status=DagsterRunStatus.STARTED,
            tags={"polyai-sync/worker": dead.tag()},
        )
    )
    assert [r.run_id for r in recover_dead_runs(instance)] == [run_id]
    assert instance.get_run_by_id(run_id).status == DagsterRunStatus.FAILURE

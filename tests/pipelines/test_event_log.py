"""The event log ``polyai-sync sync`` writes through (:mod:`pipelines.event_log`): Dagster's SQLite
files, written with engines kept open, read back by Dagster's own class (as the UI reads them)."""

from __future__ import annotations

import threading
from pathlib import Path

from dagster import AssetKey, AssetMaterialization, DagsterInstance, asset, materialize

from pipelines import event_log
from pipelines.event_log import PooledSqliteEventLogStorage
from pipelines.instance import dagster_home
from pipelines.runner import cli_instance


@asset
def counted() -> int:
    return 1


def _homes(tmp_path: Path, monkeypatch) -> tuple[DagsterInstance, DagsterInstance]:
    """The command's instance and Dagster's own, on one new ``DAGSTER_HOME``."""
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(tmp_path / "home")
    return cli_instance(str(home)), DagsterInstance.from_config(str(home))


def _kinds(instance: DagsterInstance, run_id: str) -> list[str]:
    return [r.dagster_event.event_type_value for r in instance.all_logs(run_id) if r.dagster_event]


def test_runs_written_through_open_engines_read_back_by_dagsters_own_storage(
    tmp_path: Path, monkeypatch
) -> None:
    ours, dagsters = _homes(tmp_path, monkeypatch)
    assert type(ours.event_log_storage) is PooledSqliteEventLogStorage
    assert type(dagsters.event_log_storage) is not PooledSqliteEventLogStorage

    run_ids = [materialize([counted], instance=ours).run_id for _ in range(3)]

    for run_id in run_ids:
        theirs = _kinds(dagsters, run_id)
        assert "ASSET_MATERIALIZATION" in theirs and theirs[-1] == "PIPELINE_SUCCESS"
        assert theirs == _kinds(ours, run_id)
    latest = dagsters.get_latest_materialization_event(AssetKey("counted"))
    assert latest is not None and latest.run_id == run_ids[-1]
    assert dagsters.get_run_by_id(run_ids[-1]).is_success


def test_at_most_open_shards_engines_stay_open(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(event_log, "OPEN_SHARDS", 2)
    ours, dagsters = _homes(tmp_path, monkeypatch)
    storage = ours.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)

    run_ids = [materialize([counted], instance=ours).run_id for _ in range(4)]

    assert len(storage._engines) == 2
    # An evicted run's file is opened again when asked for, and is whole.
    assert _kinds(ours, run_ids[0])[-1] == "PIPELINE_SUCCESS"
    assert len(dagsters.get_runs()) == 4


def test_events_stored_from_threads_at_once_are_all_kept(tmp_path: Path, monkeypatch) -> None:
    """The watcher reads while the runs write: the lock serializes them; none times out."""
    ours, dagsters = _homes(tmp_path, monkeypatch)

    def report(name: str) -> None:
        for number in range(25):
            ours.report_runless_asset_event(AssetMaterialization(name, metadata={"n": number}))

    threads = [threading.Thread(target=report, args=(f"a{t}",)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for t in range(4):
        records = dagsters.fetch_materializations(AssetKey(f"a{t}"), limit=100).records
        assert sorted(r.asset_materialization.metadata["n"].value for r in records) == list(
            range(25)
        )


def test_a_storage_configured_in_dagster_yaml_is_left_as_configured(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    home = dagster_home(tmp_path / "home")
    elsewhere = tmp_path / "elsewhere"
    (home / "dagster.yaml").write_text(f"storage:\n  sqlite:\n    base_dir: {elsewhere}\n")

    instance = cli_instance(str(home))

    assert type(instance.event_log_storage) is not PooledSqliteEventLogStorage
    run_id = materialize([counted], instance=instance).run_id
    assert DagsterInstance.from_config(str(home)).get_run_by_id(run_id) is not None
    assert (elsewhere / "history" / "runs" / f"{run_id}.db").exists()


def test_the_pooled_log_writes_the_default_storages_folders(tmp_path: Path, monkeypatch) -> None:
    ours, _ = _homes(tmp_path, monkeypatch)
    run_id = materialize([counted], instance=ours).run_id
    home = tmp_path / "home"
    assert (home / "history" / "runs" / f"{run_id}.db").exists()
    assert (home / "history" / "runs.db").exists()
    assert (home / "history" / "runs" / "index.db").exists()


def test_connections_sync_to_disk_at_checkpoints_not_every_commit(
    tmp_path: Path, monkeypatch
) -> None:
    ours, _ = _homes(tmp_path, monkeypatch)
    storage = ours.event_log_storage
    assert isinstance(storage, PooledSqliteEventLogStorage)
    run_id = materialize([counted], instance=ours).run_id

    with storage._connect(run_id) as conn:
        journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    assert (journal, synchronous) == ("wal", 1)  # 1 is NORMAL; SQLite's default is 2, FULL

"""The lake on an object store: the same hive layout, API and whole-file guarantee as in a
local folder (the API and failure tests run on both), on a real S3 API: moto's server on
loopback, with keys, a region and its endpoint in the environment as a deployment has them.
DuckDB reads it back through pyarrow's S3 filesystem (its httpfs extension cannot be
downloaded here)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from fsspec.implementations.arrow import ArrowFSWrapper
from pyarrow import fs

from core import schema
from core.windows import Scope, daily_window
from resources.lake import GCS_RETRY_LIMIT_SECONDS, ParquetLake, open_filesystem, replacing
from resources.warehouse import Warehouse
from tests.conftest import SYNC_DAY
from tests.pipelines.cli_runs import clean_env, run_cli
from tests.s3 import MetadataEndpoint

ROOT = Path(__file__).resolve().parents[2]
VOICE = Scope("live", "voice")


def every_file(lake: ParquetLake) -> list[str]:
    """Every file (every object) under the lake's root, hidden ones (temporaries) included."""
    store, base = open_filesystem(lake.root)
    selector = fs.FileSelector(base, recursive=True, allow_not_found=True)
    return sorted(i.path for i in store.get_file_info(selector) if i.type == fs.FileType.File)


class ArrowS3(ArrowFSWrapper):
    """pyarrow's S3 filesystem as fsspec's, under the name DuckDB routes ``s3://`` to."""

    protocol = "s3"


def duckdb_reading(url: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.register_filesystem(ArrowS3(open_filesystem(url)[0]))
    return con


def partition_rows(con: duckdb.DuckDBPyConnection, url: str, table: sa.Table) -> list:
    keys = ", ".join(c.name for c in table.primary_key.columns)
    return con.execute(
        f"SELECT {keys}, environment, channel, CAST(date AS VARCHAR) FROM read_parquet("
        f"'{url}/{table.name}/**/*.parquet', hive_partitioning = true) ORDER BY ALL"
    ).fetchall()


def test_windows_exported_to_s3_land_in_hive_folders_duckdb_reads_back_as_the_warehouse(
    run_sync_job, warehouse: Warehouse, bucket: str
) -> None:
    days = (SYNC_DAY - timedelta(days=1), SYNC_DAY)
    url = f"s3://{bucket}/lake"
    lake = ParquetLake(root=url)
    for day in days:
        run_sync_job(day)
        assert lake.export_window(warehouse, VOICE, daily_window(day))["conversations"] > 0

    assert every_file(lake) == sorted(
        f"{bucket}/lake/{table.name}/environment=live/channel=voice/date={day}/day.parquet"
        for table in schema.WINDOW_TABLES
        for day in days
    )
    with duckdb_reading(url) as con:
        for table in schema.WINDOW_TABLES:
            stored = warehouse.read_table(table.name)
            keys = [c.name for c in table.primary_key.columns]
            expected = sorted(
                (*row[:-1], str(row[-1]))
                for row in stored[[*keys, "environment", "channel", "conversation_date"]]
                .astype(object)
                .itertuples(index=False, name=None)
            )
            assert partition_rows(con, url, table) == expected, table.name


@pytest.fixture(params=["local", "s3"])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> ParquetLake:
    """An empty lake in a local folder, or in a new bucket."""
    if request.param == "local":
        return ParquetLake(root=str(tmp_path / "exported-lake"))  # not the sync job's own
    return ParquetLake(root=f"s3://{request.getfixturevalue('bucket')}/lake")


def test_a_write_failing_in_the_middle_of_a_file_leaves_the_old_file(
    run_sync_job, warehouse: Warehouse, any_lake: ParquetLake
) -> None:
    """pyarrow completes an upload when its stream closes, even on an error: the failed
    write completes only its temporary, which is deleted, never the final object."""
    lake = any_lake
    run_sync_job()
    lake.export_window(warehouse, VOICE, daily_window(SYNC_DAY))
    final = lake.window_file("conversations", VOICE, daily_window(SYNC_DAY))
    old = lake.read_parquet(final)

    def half_a_file(stream: pa.NativeFile) -> None:
        stream.write(b"PAR1" + b"\0" * 1_000_000)
        raise OSError("the disk went away")

    store, _ = open_filesystem(lake.root)
    with pytest.raises(OSError, match="the disk went away"), replacing(store) as write:
        write(final, half_a_file)

    assert lake.read_parquet(final).equals(old)
    assert not [path for path in every_file(lake) if path.endswith(".tmp")]


@pytest.mark.latency_breakdown  # a file of every window table with rows
def test_a_window_failing_after_its_first_file_leaves_every_old_file(
    run_sync_job, warehouse: Warehouse, any_lake: ParquetLake
) -> None:
    lake = any_lake
    window = daily_window(SYNC_DAY)
    run_sync_job()
    lake.export_window(warehouse, VOICE, window)
    files = [lake.window_file(t.name, VOICE, window) for t in schema.WINDOW_TABLES]
    old = {path: lake.read_parquet(path) for path in files}
    run_sync_job()  # a re-sync: new load ids in every table
    turns = warehouse.table_ref("turns")
    with warehouse.connect() as con:  # reading the second table now fails, for real
        con.execute(f"ALTER TABLE {turns} RENAME TO turns_away")

    with pytest.raises(Exception, match="turns"):
        lake.export_window(warehouse, VOICE, window)
    for path in files:
        assert lake.read_parquet(path).equals(old[path]), path
    assert not [path for path in every_file(lake) if path.endswith(".tmp")]

    with warehouse.connect() as con:
        con.execute(f"ALTER TABLE {warehouse.table_ref('turns_away')} RENAME TO turns")
    lake.export_window(warehouse, VOICE, window)  # and the export would have replaced them
    for path in files:
        loads = set(lake.read_parquet(path).column("load_id").to_pylist())
        assert loads and loads.isdisjoint(old[path].column("load_id").to_pylist()), path


def test_the_lake_api_lists_reads_replaces_and_removes_files(any_lake: ParquetLake) -> None:
    lake, window = any_lake, daily_window(SYNC_DAY)
    assert lake.files("conversations") == [] and lake.display == lake.root
    parquet = lake.window_file("conversations", VOICE, window)
    lake.write_parquet(parquet, pa.table({"id": ["a", "b"], "n": [1, 2]}))
    sample = pd.DataFrame({"conversation_id": ["a", "b"], "transcript": ["=1+1", "NA"]})
    csv = lake.write_csv("qa_samples", VOICE, window, sample)
    assert csv == parquet.replace("/conversations/", "/qa_samples/").replace(".parquet", ".csv")
    assert lake.files("conversations") == [parquet] and lake.files("qa_samples") == [csv]
    assert lake.partition_of(csv) == ("live", "voice", SYNC_DAY)

    lake.write_parquet(parquet, pa.table({"id": ["b"], "n": [2]}))  # replaced whole
    assert lake.read_parquet(parquet).to_pydict() == {"id": ["b"], "n": [2]}
    read = lake.read_csv(csv)  # as text: the formula made inert, "NA" kept as written
    assert read.to_dict("list") == {"conversation_id": ["a", "b"], "transcript": ["'=1+1", "NA"]}
    lake.rewrite_csv(csv, read[read["conversation_id"] == "b"])
    assert lake.read_csv(csv).to_dict("list") == {"conversation_id": ["b"], "transcript": ["NA"]}

    lake.remove(parquet)
    lake.remove(parquet)  # already gone: no error
    assert lake.files("conversations") == [] and lake.files("qa_samples") == [csv]
    with pytest.raises(ValueError, match="not a file in the lake"):
        lake.remove(parquet.split("/conversations/")[0] + "-next-door/conversations/x.parquet")
    with pytest.raises(ValueError, match="not a lake file"):
        lake.partition_of("bucket/lake/conversations/day.parquet")


@pytest.mark.e2e
def test_the_demo_writes_its_lake_to_s3_when_lake_url_says_so(
    tmp_path: Path, bucket: str, s3_env: dict[str, str], ec2_metadata: MetadataEndpoint
) -> None:
    url = f"s3://{bucket}/demo-lake"
    env = clean_env(**s3_env, LAKE_URL=url)
    done = run_cli("demo", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr

    warehouse = tmp_path / ".polyai-sync" / "demo" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = con.execute(
            "SELECT channel, CAST(conversation_date AS VARCHAR), count(*) "
            "FROM polyai.conversations GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    with duckdb_reading(url) as con:  # the scope and day from the hive folders
        in_lake = con.execute(
            "SELECT channel, CAST(date AS VARCHAR), count(*) FROM read_parquet("
            f"'{url}/conversations/**/*.parquet', hive_partitioning = true) GROUP BY ALL "
            "ORDER BY ALL"
        ).fetchall()
    assert in_lake == stored and len(stored) == 6  # voice and chat, three days
    assert not (tmp_path / ".polyai-sync" / "demo" / "lake").exists()
    assert ec2_metadata.asked == []  # every step process found its keys and region


@pytest.mark.e2e
@pytest.mark.parametrize("given", ["keys and region", "nothing"])
def test_with_keys_and_a_region_set_nothing_waits_for_the_ec2_metadata_endpoint(
    given: str, bucket: str, s3_env: dict[str, str], ec2_metadata: MetadataEndpoint
) -> None:
    """A process of its own, since the AWS SDK reads its settings once per process. Without
    keys or a region it asks the endpoint (which here answers at once): the check sees it."""
    env = {k: v for k, v in s3_env.items() if given != "nothing" or "KEY" not in k}
    if given == "nothing":
        del env["AWS_REGION"]
    code = (
        "import pyarrow as pa, sys; from resources.lake import ParquetLake; "
        "lake = ParquetLake(root=sys.argv[1]); "
        "lake.write_parquet(sys.argv[1][5:] + '/t/day.parquet', pa.table({'n': [1]}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, f"s3://{bucket}/lake"],
        env={**{k: v for k, v in clean_env().items() if not k.startswith("AWS_")}, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert bool(ec2_metadata.asked) == (given == "nothing"), ec2_metadata.asked


def test_a_gcs_lake_stops_retrying_after_a_minute_not_fifteen() -> None:
    """Without a token, GCS asks its metadata server and retries that as a transient error
    for google-cloud-cpp's 15 minutes unless told otherwise (measured: still waiting after 5)."""
    store, path = open_filesystem("gs://bucket/lake?endpoint_override=127.0.0.1:9&scheme=http")
    options = store.__reduce__()[1][0]  # what pyarrow pickles the filesystem with
    assert path == "bucket/lake" and options["endpoint_override"] == "127.0.0.1:9"
    assert options["retry_time_limit"] == timedelta(seconds=GCS_RETRY_LIMIT_SECONDS)

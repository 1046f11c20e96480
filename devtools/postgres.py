"""A throwaway PostgreSQL cluster on a loopback port, from the operating system's packages.

The test suite and the benchmark need a real server and no container engine is at hand, so
this runs ``initdb`` and ``pg_ctl`` from the installed PostgreSQL (Debian's
``postgresql`` package, or any install with its programs on ``PATH`` or in ``POLYAI_PG_BIN``)
into a temporary folder, on a free port of 127.0.0.1, with trust authentication for the local
superuser ``postgres``. PostgreSQL refuses to run as root: as root, the cluster runs as the
``postgres`` user (made by the Debian package) through ``runuser``.

Command line (``.ci/run`` uses it)::

    python -m devtools.postgres start /tmp/pg    # prints the server's URL
    python -m devtools.postgres stop /tmp/pg
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

SUPERUSER = "postgres"


class ClusterError(RuntimeError):
    """PostgreSQL could not be found or started here."""


def bin_dir() -> Path:
    """Where ``initdb`` and ``pg_ctl`` are: ``$POLYAI_PG_BIN``, else PATH, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH)."""
    if os.environ.get("POLYAI_PG_BIN"):
        return Path(os.environ["POLYAI_PG_BIN"])
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if versions:
        return Path(versions[-1]).parent
    raise ClusterError(
        "PostgreSQL is not installed (no initdb on PATH, in $POLYAI_PG_BIN or in "
        "/usr/lib/postgresql/*/bin); on Debian: apt-get install postgresql"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: its folder and port."""

    root: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def new_database(server_url: str, prefix: str = "t") -> str:
    """Create an empty database on the server ``server_url`` reaches; the new database's URL
    (the same credentials)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError as exc:
        raise ClusterError(
            "running as root, and PostgreSQL refuses root: there is no 'postgres' user to run "
            "it as (Debian's postgresql package creates one)"
        ) from exc
    return ["runuser", "-u", SUPERUSER, "--", *command]


def _run(command: list[str]) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True)
    if done.returncode:
        raise ClusterError(f"{' '.join(command[:2])} failed: {done.stderr.strip() or done.stdout}")


def start(root: Path, port: int | None = None, durable: bool = False) -> Cluster:
    """Create and start a cluster in ``root`` (made if missing, must be empty).

    ``durable=False`` (tests) turns off fsync and synchronous commit: a crash of the machine
    could lose the cluster, which is thrown away anyway. The benchmark keeps the defaults.
    """
    programs = bin_dir()
    root = root.absolute()
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(root, SUPERUSER)
        root.chmod(0o700)
    data = root / "data"
    _run([str(programs / "initdb"), "-D", str(data), "-A", "trust", "-U", SUPERUSER,
          "-E", "UTF8", "--no-sync"])  # fmt: skip
    port = port or free_port()
    options = [
        f"-p {port}",
        f"-k {root}",
        "-c listen_addresses=127.0.0.1",
        "-c max_connections=200",
    ]
    if not durable:
        options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
    _run([str(programs / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w",
          "-t", "60", "-o", " ".join(options), "start"])  # fmt: skip
    (root / "port").write_text(str(port))
    return Cluster(root, port)


def stop(root: Path) -> None:
    """Stop the cluster in ``root`` (if it runs) and delete the folder."""
    root = root.absolute()
    data = root / "data"
    if (data / "postmaster.pid").exists():
        _run([str(bin_dir() / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
    shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.postgres", description=__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("root", type=Path, help="the cluster's folder (deleted by stop)")
    parser.add_argument("--port", type=int, help="default: a free port")
    parser.add_argument("--durable", action="store_true", help="keep fsync on")
    args = parser.parse_args(argv)
    try:
        if args.action == "start":
            print(start(args.root, args.port, args.durable).url())
        else:
            stop(args.root)
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""An S3 API for the tests: moto's server on a loopback port (one per test module), a bucket
per test, and the AWS variables a deployment sets (keys, region, endpoint), with the
developer's own AWS settings and files out of reach and a stand-in EC2 metadata endpoint that
records whether the SDK asked it. tests/conftest.py
makes the fixtures every test's."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pyarrow import fs


class MetadataEndpoint(ThreadingHTTPServer):
    """A stand-in for the EC2 metadata endpoint that answers 404 at once and records what it
    was asked: the AWS SDK asks it for what the environment lacks, and a real one that never
    answers costs seconds per request."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                endpoint.asked.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_PUT = answer

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """An S3 API on a loopback port; its endpoint URL."""
    from moto.server import ThreadedMotoServer  # here: the import costs every test run

    from tests.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def ec2_metadata() -> Iterator[MetadataEndpoint]:
    endpoint = MetadataEndpoint()
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    try:
        yield endpoint
    finally:
        endpoint.shutdown()
        endpoint.server_close()


@pytest.fixture
def s3_env(
    s3_server: str, ec2_metadata: MetadataEndpoint, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The AWS variables of a deployment (keys, region, endpoint), set in this process; the
    developer's own AWS settings and files out of reach."""
    env = {
        "AWS_ACCESS_KEY_ID": "test-key-id",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": ec2_metadata.url,
    }
    for name in os.environ:
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> str:
    """A new, empty bucket."""
    name = f"lake-{uuid.uuid4().hex[:12]}"
    store, _ = fs.FileSystem.from_uri(f"s3://{name}?allow_bucket_creation=true")
    store.create_dir(name)
    return name

"""Settings that would leak the key or send it elsewhere (issue 15), through the real CLI: each is
refused before anything runs, naming the variable, with no secret in any output or file."""

import pytest

from tests.hostile.harness import Deployment
from tests.hostile.server import KEY

pytestmark = pytest.mark.e2e

PASSWORD = "pw-hunter2-77"


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("POLYAI_BASE_URL", f"http://user:{PASSWORD}@127.0.0.1:9", "carries credentials"),
        ("POLYAI_BASE_URL", "http://api.example.com", "plain http to another machine"),
        ("POLYAI_API_KEY", f"{KEY}\n{PASSWORD}", "whitespace or a control character"),
        ("POLYAI_ACCOUNT_ID", "../../admin", "is not an id"),
        ("POLYAI_PROJECT_ID", "proj/conversations?client_env=sandbox&x=", "is not an id"),
    ],
    ids=["url-credentials", "plain-http", "key-with-newline", "account-path", "project-query"],
)
def test_a_setting_that_would_leak_or_redirect_the_key_is_refused_before_any_request(
    duckdb_deployment: Deployment, variable: str, value: str, said: str
) -> None:
    done = duckdb_deployment.sync("2026-01-04", None, **{variable: value})
    assert done.returncode == 2
    assert variable in done.stderr and said in done.stderr
    assert "Traceback" not in done.stderr
    assert duckdb_deployment.api.requests == []  # not one request was sent
    duckdb_deployment.assert_no_secret(done, secrets=(KEY, PASSWORD))

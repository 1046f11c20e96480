"""The docs stay true: the generated reference pages are what the code says now, the site
builds with every link and anchor resolved, the README stays a short front door, and the docs
carry no issue numbers or commit ids (history belongs in CHANGELOG.md)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from duckdb_engine import Dialect as DuckDBDialect
from sqlalchemy.dialects import postgresql

from core import schema
from core.env import DESCRIPTIONS, Env
from devtools import docs

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 250
QUICKSTART = ["uv run polyai-sync demo", "uv run pytest"]

CITATION = re.compile(
    # "issue 28", "issues 17 and 28", "PR 5", "pull request #5"
    r"\b(?:issues?|pull requests?|PRs?)\s*#?\d+\b"
    # "#28", but not an HTML entity (&#28;), a URL fragment (page#28) or an anchor (#1-install)
    r"|(?<![\w&/#])#\d+(?![\w-])"
    # a commit id: 7 to 40 lowercase hex digits with a letter and a digit among them, standing
    # alone (so not a word like "deadbeef", nor part of a UUID, 0x7fff..., or a sha256 digest)
    r"|(?<![\w-])(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}(?![\w-])",
    re.IGNORECASE,
)


def citations(text: str) -> list[str]:
    """Every issue number or commit id ``text`` cites."""
    return [match.group(0) for match in CITATION.finditer(text)]


def test_the_generated_pages_are_what_the_code_says_now() -> None:
    stale = docs.stale_pages()
    assert stale == [], (
        f"{', '.join(stale)} no longer match the code: run `{docs.FIX_COMMAND}` and commit them"
    )


def test_a_new_column_or_variable_makes_its_page_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs.write_pages(tmp_path)
    assert docs.stale_pages(tmp_path) == []

    grown = sa.MetaData()
    for table in schema.metadata.tables.values():
        table.to_metadata(grown)
    grown.tables["conversations"].append_column(sa.Column("sentiment", sa.String))
    monkeypatch.setitem(
        docs.PAGES, "docs/reference/data-model.md", lambda: docs.data_model_page(grown)
    )
    assert docs.stale_pages(tmp_path) == ["docs/reference/data-model.md"]

    reworded = {**DESCRIPTIONS, Env.POLYAI_REGION: "somewhere else"}
    monkeypatch.setitem(
        docs.PAGES, "docs/reference/configuration.md", lambda: docs.configuration_page(reworded)
    )
    assert docs.stale_pages(tmp_path) == [
        "docs/reference/configuration.md",
        "docs/reference/data-model.md",
    ]


def test_the_check_names_a_stale_page_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    docs.write_pages()
    assert docs.main(["--check"]) == 0

    page = tmp_path / "docs/reference/configuration.md"
    page.write_text(page.read_text().replace("`POLYAI_REGION`", "`POLYAI_ZONE`"))
    assert docs.main(["--check"]) == 1
    assert capsys.readouterr().err == (
        f"docs/reference/configuration.md is stale: run `{docs.FIX_COMMAND}`\n"
    )
    assert docs.main([]) == 0
    assert docs.main(["--check"]) == 0


def test_every_variable_has_a_description() -> None:
    assert [name for name in Env if not DESCRIPTIONS.get(name, "").strip()] == []
    assert set(DESCRIPTIONS) == set(Env)


def test_a_variable_without_a_description_stops_the_generator() -> None:
    described = {name: text for name, text in DESCRIPTIONS.items() if name != Env.LAKE_URL}
    with pytest.raises(ValueError, match="LAKE_URL"):
        docs.configuration_page(described)


def test_both_engines_create_the_types_the_reference_shows() -> None:
    """The data model reference shows one type per column: both engines must agree on it."""
    differ = {
        f"{table.name}.{column.name}": (
            column.type.compile(dialect=postgresql.dialect()),
            column.type.compile(dialect=DuckDBDialect()),
        )
        for table in schema.metadata.tables.values()
        for column in table.columns
        if column.type.compile(dialect=postgresql.dialect())
        != column.type.compile(dialect=DuckDBDialect())
    }
    assert differ == {}


def build_site(config_dir: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not our output
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=config_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_docs_build_strictly(tmp_path: Path) -> None:
    done = build_site(ROOT, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "data-model" / "index.html").exists()


def test_a_broken_link_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "deploy").mkdir()
    shutil.copy(ROOT / "deploy" / "README.md", tmp_path / "deploy" / "README.md")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\nSee [the checks](operations.md#no-such-section).\n")
    done = build_site(tmp_path, tmp_path / "site")
    assert done.returncode != 0
    assert "no-such-section" in done.stdout + done.stderr


def readme() -> str:
    return (ROOT / "README.md").read_text()


def test_the_readme_is_short() -> None:
    lines = len(readme().splitlines())
    assert lines < MAX_README_LINES, f"README.md has {lines} lines: move the detail into docs/"


def test_the_readme_quickstart_is_the_two_commands_and_ci_runs_its_test_command() -> None:
    quickstart = readme().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = quickstart.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert commands == QUICKSTART
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == QUICKSTART[1]


def test_the_readme_links_resolve() -> None:
    targets = re.findall(r"\]\((?!https?://)([^)#\s]+)", readme())
    assert targets, "the README links into docs/"
    assert [target for target in targets if not (ROOT / target).exists()] == []


def test_no_page_cites_an_issue_or_a_commit() -> None:
    cited = {}
    for path in sorted((ROOT / "docs").rglob("*")):
        try:
            text = path.read_text() if path.is_file() else ""
        except UnicodeDecodeError:  # an image
            continue
        if found := citations(text):
            cited[str(path.relative_to(ROOT))] = found
    assert cited == {}, "history (issues, commits) belongs in CHANGELOG.md"


@pytest.mark.parametrize(
    "text",
    [
        "measured at d790740 on an idle machine",
        "(commit `3e91208`)",
        "the targets of issue 17",
        "Issues 17 and 28",
        "see #28.",
        "fixed (#28)",
        "pull request #5",
    ],
)
def test_the_citation_check_sees_a_citation(text: str) -> None:
    assert citations(text) != []


@pytest.mark.parametrize(
    "text",
    [
        "(error_id 550e8400-e29b-41d4-a716-446655440000, quote it to PolyAI support)",
        "`hmac-sha256:<hex>`",
        "a sha256 of 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        "deadbeef, facade, decade, 0x7fffffff",
        "see [Install](#1-install) and &#123;",
        "100,020 conversations, 1,199,250 turns, 2026-11-20-05:00, 1e400",
        "partition keys become `2026-11-20-05:00`",
    ],
)
def test_the_citation_check_lets_hex_looking_text_be(text: str) -> None:
    assert citations(text) == []

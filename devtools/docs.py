"""The docs pages that are generated from the code, so they cannot drift from it.

``docs/reference/configuration.md`` is written from :mod:`core.env` (every :class:`Env`
member, its default and what it means) and ``docs/reference/data-model.md`` from
:mod:`core.schema` (every table, its columns, their SQL types, keys, nullability and
comments). The rest of ``docs/`` is written by hand and links to these two.

    uv run python -m devtools.docs            # rewrite the generated pages
    uv run python -m devtools.docs --check    # exit 1, naming each page that is stale

``tests/test_docs.py`` runs the check, so a new variable or column that is not in the pages
fails the suite with the command that fixes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from core import schema
from core.env import DAGSTER_VARIABLES, DEFAULTS, DEFAULTS_IN_WORDS, DESCRIPTIONS, Env
from resources.warehouse.duckdb_engine import DuckDBWarehouse

ROOT = Path(__file__).resolve().parents[1]
FIX_COMMAND = "uv run python -m devtools.docs"


def _generated_by(source: str) -> str:
    return f"<!-- Generated from {source} by `{FIX_COMMAND}`: edit the code, not this page. -->\n"


def _cell(text: str) -> str:
    """``text`` made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def default_in_words(name: Env) -> str:
    """How the reference shows ``name``'s default: its meaning in words where
    :data:`core.env.DEFAULTS_IN_WORDS` has one, else the literal default."""
    if name in DEFAULTS_IN_WORDS:
        return DEFAULTS_IN_WORDS[name]
    if DEFAULTS.get(name):
        return f"`{DEFAULTS[name]}`"
    raise ValueError(
        f"{name} has no default and no entry in core.env.DEFAULTS_IN_WORDS: "
        "say there what leaving it unset means"
    )


def configuration_page(descriptions: Mapping[str, str] = DESCRIPTIONS) -> str:
    """``docs/reference/configuration.md``: every environment variable polyai-sync reads,
    described by ``descriptions`` (one entry per :class:`Env` member)."""
    missing = [name for name in Env if not descriptions.get(name, "").strip()]
    if missing:
        raise ValueError(f"no description in core.env.DESCRIPTIONS for {', '.join(missing)}")
    lines = [
        _generated_by("core/env.py"),
        "# Configuration reference",
        "",
        "Every environment variable polyai-sync reads, in the order `core/env.py` declares "
        "them. They are read and validated in one place (`core/config.py`): a malformed value "
        "is an error naming the variable. How the settings work together is in "
        "[Configuration](../configuration.md).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
        *(
            f"| `{name}` | {_cell(default_in_words(name))} | {_cell(descriptions[name])} |"
            for name in Env
        ),
        "",
        "## Read by Dagster",
        "",
        "Not settings of polyai-sync, but read by Dagster in every deployment. Dagster's own "
        "storage in production reads `DAGSTER_PG_*`: see [Deployment](../deployment.md).",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
        *(
            f"| `{name}` | {_cell(default)} | {_cell(meaning)} |"
            for name, (default, meaning) in DAGSTER_VARIABLES.items()
        ),
    ]
    return "\n".join(lines) + "\n"


def _sql_type(column: sa.Column) -> str:
    # Both engines compile the declaration to the same names (tests/test_docs.py checks).
    return column.type.compile(dialect=postgresql.dialect())


def _key(column: sa.Column, table: sa.Table) -> str:
    if column.primary_key:
        if table in DuckDBWarehouse.unenforced_keys:
            return "key\\*"
        return "key"
    return "not null" if column.nullable is False else "null"


def _column_comment(column: sa.Column) -> str:
    comment = _cell(column.comment or "")
    field = column.info.get("key")
    if field and field != column.name:  # named for its unit, or a partition column took it
        return f"from the API's `{field}`: {comment}" if comment else f"from the API's `{field}`"
    return comment


def _table_section(table: sa.Table) -> list[str]:
    if table in schema.WINDOW_TABLES:
        role = "Replaced window by window by the sync."
    elif table in schema.ANALYTICS_TABLES:
        role = "Recomputed from the window tables, window by window."
    else:
        role = ""
    comment = _cell(table.comment or "")
    about = " ".join(
        part for part in (comment[:1].upper() + comment[1:] + ".", role) if part != "."
    )
    return [
        f"## `{table.name}`",
        "",
        *([about, ""] if about else []),
        "| column | type | key / null | comment |",
        "|---|---|---|---|",
        *(
            f"| `{column.name}` | `{_sql_type(column)}` | {_key(column, table)} | "
            f"{_column_comment(column)} |"
            for column in table.columns
        ),
        "",
    ]


def data_model_page(metadata: sa.MetaData = schema.metadata) -> str:
    """``docs/reference/data-model.md``: every table of ``metadata`` (the warehouse's)."""
    unenforced = ", ".join(f"`{table.name}`" for table in DuckDBWarehouse.unenforced_keys)
    lines = [
        _generated_by("core/schema.py"),
        "# Data model reference",
        "",
        "Every table of the warehouse, in the order `core/schema.py` declares them, in the "
        "schema `WAREHOUSE_SCHEMA` (default `polyai`). Types are the SQL both engines "
        "create; *key* columns form the table's primary key, *not null* columns are "
        "`NOT NULL`, *null* columns may be null. What the tables mean together, and how a "
        "window loads, is in [Data model](../data-model.md).",
        "",
        f"\\* In DuckDB the keys of {unenforced} are `NOT NULL` columns without a "
        "`PRIMARY KEY` index: the load keeps them unique and a check verifies it.",
        "",
    ]
    for table in metadata.tables.values():
        lines += _table_section(table)
    return "\n".join(lines).rstrip("\n") + "\n"


PAGES: dict[str, Callable[[], str]] = {
    "docs/reference/configuration.md": configuration_page,
    "docs/reference/data-model.md": data_model_page,
}
"""Each generated page, by its path from the repository root, and what writes it."""


def stale_pages(root: Path | None = None) -> list[str]:
    """The generated pages under ``root`` (the repository's by default) whose text is not what
    the generator writes now."""
    root = root or ROOT
    stale = []
    for page, generate in PAGES.items():
        path = root / page
        if not path.exists() or path.read_text() != generate():
            stale.append(page)
    return stale


def write_pages(root: Path | None = None) -> list[str]:
    """Rewrite every generated page under ``root`` (the repository's by default); the pages
    that changed."""
    root = root or ROOT
    changed = stale_pages(root)
    for page in changed:
        path = root / page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PAGES[page]())
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.docs", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="change nothing; exit 1 if a page is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_pages()
        for page in stale:
            print(f"{page} is stale: run `{FIX_COMMAND}`", file=sys.stderr)
        return 1 if stale else 0
    for page in write_pages():
        print(f"wrote {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``polyai-sync forget``: erase a person's conversations (by id or phone number) from the
warehouse and the lake (:mod:`sync.forget`). It prints counts and the erasure's id, never the
ids or numbers it was given, and records the erasure in the ``erasures`` table."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core.config import Settings
from core.errors import PolyAISyncError


def add_forget_parser(commands: Any) -> None:
    """The ``forget`` sub-command, on the CLI's sub-parsers."""
    forget = commands.add_parser(
        "forget",
        help="remove a person's conversations from every table and lake file, for good",
        description=(
            "Remove conversations from every table of the warehouse (staged pages, quarantine, "
            "QA samples and saved-search matches included) and every lake file that held them, "
            "rebuild the KPIs of the windows touched (dbt), and record the erasure (counts and "
            "time, never the ids or numbers). A later re-sync of a window brings a "
            "conversation back only if the API still serves it."
        ),
    )
    given = forget.add_mutually_exclusive_group(required=True)
    given.add_argument("--conversation-id", nargs="+", metavar="ID", help="the conversations' ids")
    given.add_argument(
        "--phone-number",
        nargs="+",
        metavar="NUMBER",
        help="every conversation from or to these numbers, as the API gives them "
        "(e.g. +447700900123); matched through their hash when POLYAI_HASH_PHONE_NUMBERS is on",
    )
    forget.set_defaults(func=cmd_forget)


def _kpis_said(dbt_models: bool, error: str | None) -> str:
    if not dbt_models:
        return ""  # POLYAI_DBT_MODELS off: no KPI tables to keep up
    return ", KPIs NOT rebuilt" if error else ", KPIs rebuilt"


def cmd_forget(args: argparse.Namespace) -> int:
    from resources.lake import ParquetLake
    from resources.warehouse import warehouse_for
    from sync.forget import forget

    settings = Settings.from_env(os.environ)
    warehouse = warehouse_for(
        settings.warehouse_url, settings.warehouse_schema, settings.warehouse_max_memory_mb
    )
    lake = ParquetLake(root=settings.lake_url)
    hash_key = settings.phone_hash_salt.encode() if settings.hash_phone_numbers else None
    try:
        done = forget(
            warehouse,
            lake,
            conversation_ids=args.conversation_id or (),
            phone_numbers=args.phone_number or (),
            hash_key=hash_key,
            kpis=settings.dbt_models,
        )
    except PolyAISyncError as exc:
        if isinstance(exc, ValueError):
            raise  # bad input: the CLI names it and exits 2
        print(
            f"polyai-sync: error: nothing was erased or it was not finished ({exc}); "
            "run the same command again",
            file=sys.stderr,
        )
        return 1
    erased = done.erased
    discarded = erased.loads_discarded
    print(
        f"Erasure {erased.erasure_id}: {erased.conversations} conversations removed "
        f"({len(erased.windows)} windows"
        f"{_kpis_said(settings.dbt_models, done.kpis_error)}); "
        f"{done.lake_files_rewritten} lake files rewritten"
        + (
            f"; {discarded} loads in progress discarded (synced again next time)"
            if discarded
            else ""
        )
    )
    for table, rows in sorted(erased.rows.items()):
        if rows:
            print(f"  {table:<22}{rows:>8} rows")
    if not erased.conversations and not done.lake_files_rewritten:
        print("Nothing held them (already erased, or never synced).")
    if done.kpis_error:
        print(
            "polyai-sync: error: the erasure is complete, but dbt did not rebuild the KPIs of "
            "the windows it touched; rebuild them with `polyai-sync dbt run --select "
            f"+tag:kpis`. dbt said:\n{done.kpis_error}",
            file=sys.stderr,
        )
        return 1
    return 0

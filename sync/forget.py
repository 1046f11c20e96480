"""Erasure: a person's conversations removed from everything polyai-sync wrote.

:func:`forget` removes the conversations named by id, or those from or to a phone number, from
the warehouse (every table, staged pages, the quarantine, the QA samples, the saved-search
matches; the file scrubbed: :mod:`resources.warehouse.removal`), then rewrites every lake file
that held them, each replaced atomically, and last has dbt rebuild the KPIs of the windows
touched (after the scrub: a dbt that fails leaves nothing of the person behind). The lake
is searched on its own, not through the warehouse, so a second run after a crash between the
two finishes the job. With phone hashing on, a number is matched through its hash. Nothing
here prints or records an id or a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from core import schema
from core.errors import PolyAISyncError
from core.lazy import lazy_module
from core.privacy import HASH_PREFIX, hash_number
from resources.dbt import DbtBuildError, rebuild_kpis
from resources.lake import ParquetLake
from resources.warehouse import Warehouse
from resources.warehouse.removal import Erased, erase, record_lake_rewrites

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.compute as pc
else:
    pa = lazy_module("pyarrow")
    pc = lazy_module("pyarrow.compute")

LAKE_CSV_TABLES = ("qa_samples",)
"""Lake tables written as CSV (one file per window) that name conversations."""


class ForgetError(PolyAISyncError, ValueError):
    """What to forget was given badly; the message says how (never the value)."""


@dataclass(frozen=True)
class Forgotten:
    """What :func:`forget` removed."""

    erased: Erased
    lake_files_rewritten: int
    kpis_error: str | None = None
    """Why dbt did not rebuild the KPIs of the windows touched (the erasure itself is done)."""


def stored_numbers(numbers: Sequence[str], hash_key: bytes | None) -> list[str]:
    """The forms a phone number may be stored in: as given, and its keyed hash when hashing
    is on (rows stored before hashing was turned on hold the number itself)."""
    forms = list(numbers)
    if hash_key is not None:
        forms += [hash_number(n, hash_key) for n in numbers if not n.startswith(HASH_PREFIX)]
    return forms


def forget(
    warehouse: Warehouse,
    lake: ParquetLake,
    conversation_ids: Sequence[str] = (),
    phone_numbers: Sequence[str] = (),
    hash_key: bytes | None = None,
    kpis: bool = True,
) -> Forgotten:
    """Remove the conversations with these ids, or from or to these numbers, everywhere;
    then (``kpis``: the dbt models are on) rebuild the KPIs of the windows they were in."""
    ids = [i.strip() for i in conversation_ids]
    numbers = [n.strip() for n in phone_numbers]
    if bool(ids) == bool(numbers):
        raise ForgetError("give conversation ids or phone numbers (one kind, at least one)")
    if not all(ids + numbers):
        raise ForgetError("an empty conversation id or phone number was given")
    if not warehouse.has_table("conversations"):
        raise ForgetError(
            f"no warehouse at {warehouse.display_url} (WAREHOUSE_URL; a relative path is "
            "relative to the working directory): nothing was erased"
        )
    forms = stored_numbers(numbers, hash_key)
    kind = "conversation_id" if ids else "phone_number"
    erased = erase(warehouse, ids, forms, kind, given=len(ids) + len(numbers))
    rewritten = _rewrite_lake(lake, set(ids) | erased.ids, set(forms))
    record_lake_rewrites(warehouse, erased.erasure_id, rewritten)
    warehouse.scrub()  # after the lake, so a scrub that fails leaves no lake file behind
    if not kpis:
        return Forgotten(erased, rewritten)
    try:
        rebuild_kpis(warehouse, erased.windows)
    except DbtBuildError as exc:  # the erasure is done; only the KPIs are behind
        return Forgotten(erased, rewritten, kpis_error=str(exc))
    return Forgotten(erased, rewritten)


TEMPORARY_AGE = timedelta(hours=1)
"""A lake temporary older than this is a killed process's leftover, not a write under way."""


def _rewrite_lake(lake: ParquetLake, ids: set[str], numbers: set[str]) -> int:
    """Rewrite every lake file holding one of the conversations (found by id, or by number in
    the lake's own conversations files), the conversations files last: a run stopped half way
    leaves them holding the numbers, so running it again finds the rest. Stale temporaries go
    too. The files rewritten."""
    conversations = lake.files("conversations")
    if numbers:  # only the three columns of each file: a lake can be far bigger than memory
        wanted = pa.array(sorted(numbers))
        for path in conversations:
            rows = lake.read_parquet(path, columns=["id", "from_number", "to_number"])
            by_number = pc.or_(
                pc.is_in(rows.column("from_number"), wanted),
                pc.is_in(rows.column("to_number"), wanted),
            )
            ids |= set(rows.filter(pc.fill_null(by_number, False)).column("id").to_pylist())
    remove_stale_temporaries(lake)
    if not ids:
        return 0
    erased = pa.array(sorted(ids))  # built once, for every file
    rewritten = 0
    for table in schema.CHILD_TABLES:
        for path in lake.files(table.name):
            rewritten += _without(lake, path, "conversation_id", erased)
    for table in LAKE_CSV_TABLES:
        for path in lake.files(table):
            frame = lake.read_csv(path)
            keep = ~frame["conversation_id"].astype(str).isin(ids)
            if not keep.all():
                lake.rewrite_csv(path, frame[keep])
                rewritten += 1
    for path in conversations:
        rewritten += _without(lake, path, "id", erased)
    return rewritten


def remove_stale_temporaries(lake: ParquetLake) -> None:
    """Remove the hidden copies killed exports left in the lake (they may hold anyone)."""
    for table in (*(t.name for t in schema.WINDOW_TABLES), *LAKE_CSV_TABLES):
        for path in lake.stale_temporaries(table, TEMPORARY_AGE):
            lake.remove(path)


def _without(lake: ParquetLake, path: str, column: str, erased: pa.Array) -> int:
    """Rewrite ``path`` without the rows whose ``column`` is in ``erased``; 1 if it did.
    Only the column is read unless it holds one."""
    keys = lake.read_parquet(path, columns=[column]).column(column)
    if not pc.any(pc.is_in(keys, erased)).as_py():
        return 0
    rows = lake.read_parquet(path)
    held = pc.fill_null(pc.is_in(rows.column(column), erased), False)
    lake.write_parquet(path, rows.filter(pc.invert(held)))
    return 1

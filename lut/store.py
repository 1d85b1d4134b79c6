"""Where tables live: ``<store>/<fingerprint-id>/res<R>-v<N>.json``, one file per version, written atomically.

The store is ``lut/tables`` under the working directory, or ``$INSTANAS_LUT_DIR``, or ``--out``. Profiling again
adds a version; older versions stay. While a profile runs, its finished measurements are appended to
``res<R>.partial.csv`` beside the tables (:func:`profile_journal`), so an interrupted profile resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from instanas.atomic import atomic_write
from instanas.errors import ForeignLUTError, LUTError
from instanas.journal import CsvJournal
from lut.table import KIND, SCHEMA_VERSION, LatencyTable, summarise_records

STORE_ENV = "INSTANAS_LUT_DIR"
_TABLE_NAME = re.compile(r"^res(\d+)-v(\d+)\.json$")


def default_store() -> Path:
    return Path(os.environ.get(STORE_ENV) or "lut/tables")


def table_versions(store: Path, fingerprint: str, resolution: int) -> list[tuple[int, Path]]:
    """Existing versions of one machine's table at one resolution, oldest first."""
    folder = Path(store) / fingerprint
    found = []
    for path in folder.glob(f"res{resolution}-v*.json"):
        match = _TABLE_NAME.match(path.name)
        if match and int(match.group(1)) == resolution:
            found.append((int(match.group(2)), path))
    return sorted(found)


PROFILE_COLUMNS = [
    "key", "kind", "cell", "module", "merged", "round",
    "median_ms", "iqr_ms", "ratio", "ratio_iqr", "reference_ms", "runs", "calls_per_run",
]


def profile_journal(store: Path, fingerprint: str, resolution: int, settings: dict, resume: bool) -> CsvJournal:
    """The record of an unfinished profile: one row per finished (entry, round) measurement."""
    folder = Path(store) / fingerprint
    return CsvJournal(
        folder / f"res{resolution}.partial.csv",
        PROFILE_COLUMNS,
        settings,
        folder / f"res{resolution}.partial.json",
        resume,
    )


def _write_new_version(meta: dict, entries: pd.DataFrame, store: Path) -> LatencyTable:
    """Write a table as the next version of its machine and resolution; never over an existing one: a version is
    created exclusively, and one that another process created meanwhile makes this the version after it."""
    fingerprint, resolution = meta["fingerprint"]["id"], meta["resolution"]
    existing = table_versions(store, fingerprint, resolution)
    version = existing[-1][0] + 1 if existing else 1
    while True:
        versioned = meta | {"version": version, "created": datetime.now(UTC).isoformat(timespec="seconds")}
        path = Path(store) / fingerprint / f"res{resolution}-v{version}.json"
        table = LatencyTable(versioned, entries, path)
        try:
            atomic_write(path, json.dumps(table.to_dict(), indent=1, allow_nan=False) + "\n", replace=False)
            return table
        except FileExistsError:
            version += 1


def save_table(
    records: pd.DataFrame, *, resolution: int, fingerprint: dict, settings: dict, store: Path
) -> LatencyTable:
    """Build a table from profiling records (one row per entry and round) and store it as a new version."""
    entries, reference = summarise_records(records)
    meta = {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "resolution": resolution,
        "fingerprint": fingerprint,
        "settings": settings,
        "reference": reference,
    }
    return _write_new_version(meta, entries, store)


def save_calibrated(table: LatencyTable, calibration: dict, store: Path) -> LatencyTable:
    """Store ``table``'s entries with a fitted calibration as a new version that names the one it came from."""
    derived_from = {"version": table.version, "content_hash": table.content_hash}
    meta = table.meta | {"calibration": calibration, "derived_from": derived_from}
    return _write_new_version(meta, table.entries, store)


def load_table(path: str | os.PathLike) -> LatencyTable:
    """Read and validate a table; a missing, truncated, corrupt or foreign-schema file raises :class:`LUTError`."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LUTError(f"{path}: no such LUT file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise LUTError(f"{path}: cannot be read ({error.__class__.__name__})") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise LUTError(f"{path}: not valid JSON (truncated or corrupt?): {error}") from None
    return LatencyTable.from_dict(payload, path)


def latest_table(store: Path, fingerprint: str, resolution: int, merge: str | None = None,
                 backend: str = "eager") -> LatencyTable:
    """The newest version (of cells that ``merge`` their modules, if given); ``backend`` names the profile to run."""
    for _, path in reversed(table_versions(store, fingerprint, resolution)):
        table = load_table(path)
        if merge is None or table.cell_merge == merge:
            return table
    cells = f" of cells that {merge} their modules" if merge else ""
    option = (f" --cell-merge {merge}" if merge else "") + (f" --backend {backend}" if backend != "eager" else "")
    raise LUTError(
        f"no LUT for {resolution} px{cells} on this machine (fingerprint {fingerprint}) under {store}: "
        f"run `instanas profile --resolution {resolution}{option}` first, or pass --lut"
    )


def check_fingerprint(table: LatencyTable, current: str, allow_foreign: bool) -> None:
    """Refuse a table profiled on another machine/software for estimating latency here, unless allowed (then warn)."""
    if table.fingerprint_id == current:
        return
    message = (
        f"{table.path}: profiled on another machine or software (fingerprint {table.fingerprint_id}, "
        f"this machine with {table.threads} threads in {table.backend} is {current})"
    )
    if not allow_foreign:
        raise ForeignLUTError(message + "; pass --allow-foreign-lut to use it anyway")
    warnings.warn(message + "; estimates may not match this machine", stacklevel=2)


def resolve_table(
    resolution: int, *, path: str | os.PathLike | None, store: Path, threads: int | None, allow_foreign: bool,
    merge: str | None = None, backend: str | None = "eager",
) -> LatencyTable:
    """The table to estimate with: ``path`` if given, else this machine's newest at ``resolution``.

    It must be of ``resolution``, of networks whose cells ``merge`` their modules (when given), timed in ``backend``
    (when given; None: whichever the table was, for consumers that only estimate or time in the table's backend) and,
    unless ``allow_foreign``, of this machine (at the table's own thread count). A table of another backend is
    refused even then: its numbers are another program's, and ``--backend`` says which one to use.
    """
    from profiler import default_threads
    from profiler.fingerprint import fingerprint_id, machine_fingerprint

    if path is None:
        backend = backend or "eager"
        current = fingerprint_id(machine_fingerprint(threads or default_threads(), backend))
        return latest_table(store, current, resolution, merge, backend)
    table = load_table(path)
    if table.resolution != resolution:
        raise LUTError(f"{table.path}: profiled at {table.resolution} px, not {resolution} px")
    if merge is not None:
        table.check_merge(merge)
    if backend is not None and table.backend != backend:
        raise ForeignLUTError(f"{table.path}: timed in the {table.backend} backend, not {backend}; "
                              f"pass --backend {table.backend}, or profile with --backend {backend}")
    check_fingerprint(table, fingerprint_id(machine_fingerprint(table.threads, table.backend)), allow_foreign)
    return table


def list_tables(store: Path) -> pd.DataFrame:
    """Every table under ``store``: one row per version, unreadable files reported in the ``problem`` column."""
    rows = []
    for path in sorted(Path(store).glob("*/res*-v*.json")):
        match = _TABLE_NAME.match(path.name)
        if not match:
            continue
        row = {"fingerprint": path.parent.name, "resolution": int(match.group(1)), "version": int(match.group(2))}
        row |= {"created": "", "cpu": None, "threads": None, "torch": None, "backend": None}
        try:
            table = load_table(path)
            fields = table.meta["fingerprint"]["fields"]
            row |= {
                "created": table.meta["created"],
                "cpu": fields.get("cpu_model"),
                "threads": table.threads,
                "torch": fields.get("torch_version"),
                "backend": table.backend,
                "problem": "",
            }
        except LUTError as error:
            row |= {"problem": str(error).split(": ", 1)[-1]}
        rows.append(row | {"path": str(path)})
    columns = ["fingerprint", "resolution", "version", "created", "cpu", "threads", "torch", "backend", "problem",
               "path"]
    return pd.DataFrame(rows, columns=columns).sort_values(["fingerprint", "resolution", "version"], ignore_index=True)

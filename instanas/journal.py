"""Append-only CSV of finished work, so a long job killed at any point resumes without losing or repeating rows.

Each row is flushed and fsynced as it is written; a row cut off by a kill is dropped on resume. The settings of the
job live in a JSON file beside it, and a resumed job must have the same settings. One process at a time writes a
journal: it holds ``<journal>.lock`` from opening to :meth:`CsvJournal.close` (:mod:`instanas.lock`).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pandas as pd

from instanas.atomic import atomic_write
from instanas.errors import InstaNASError
from instanas.lock import FileLock


class CsvJournal:
    def __init__(self, path: Path, columns: list[str], settings: dict, settings_path: Path, resume: bool):
        self.path, self.columns, self.settings_path = Path(path), list(columns), Path(settings_path)
        self._lock = FileLock(self.path.with_name(self.path.name + ".lock"), str(self.path)).acquire()
        try:
            self._open(settings, resume)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, settings: dict, resume: bool) -> None:
        header = ",".join(self.columns) + "\n"
        if resume and self.path.exists():
            saved = self._saved_settings()
            if saved != settings:
                changed = sorted(key for key in {**(saved or {}), **settings}
                                 if (saved or {}).get(key) != settings.get(key))
                differences = ", ".join(f"{key} {(saved or {}).get(key)!r} → {settings.get(key)!r}" for key in changed)
                raise InstaNASError(
                    f"{self.path}: the interrupted run used other settings ({differences}); rerun without --resume"
                )
            text = self.path.read_text()
            if not text.startswith(header):
                raise InstaNASError(f"{self.path}: unexpected columns; rerun without --resume")
            atomic_write(self.path, text[: text.rfind("\n") + 1])  # drop a row cut off mid-write
        else:
            atomic_write(self.settings_path, json.dumps(settings, indent=1) + "\n")
            atomic_write(self.path, header)
        self._file = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, self.columns)

    def _saved_settings(self) -> dict | None:
        try:
            return json.loads(self.settings_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def frame(self) -> pd.DataFrame:
        """Every finished row."""
        self._file.flush()
        return pd.read_csv(self.path)

    def append(self, row: dict) -> None:
        self._writer.writerow(row)
        self._file.flush()
        os.fsync(self._file.fileno())

    def __enter__(self) -> CsvJournal:
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def close(self, remove: bool = False) -> None:
        self._file.close()
        if remove:
            self.path.unlink(missing_ok=True)
            self.settings_path.unlink(missing_ok=True)
        self._lock.release()

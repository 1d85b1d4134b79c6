"""A profile into the LUT store: every entry of the space timed at one resolution (:mod:`profiler.space_profile`),
each finished measurement journaled beside the tables so that an interrupted profile resumes, then saved as the next
table version."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from instanas.atomic import report_path
from instanas.space import profiled_keys
from lut.store import profile_journal, save_table
from lut.table import LatencyTable
from profiler.fingerprint import fingerprint_id, machine_fingerprint
from profiler.space_profile import ProfileMeasurement, profile_space
from profiler.speed_gate import SpeedGate


class ProfileRun:
    """One resolution's profile: :meth:`measure` yields each measurement once it is journaled; :meth:`save` stores
    the table. ``gate``: time entries only while the machine runs at ``speed_of``'s speed; ``backend``: the runtime
    the entries run in (recorded in the fingerprint, so the table is this backend's)."""

    def __init__(self, resolution: int, *, store: Path, threads: int, min_run_time: float, rounds: int, seed: int,
                 merge: str, resume: bool, gate: SpeedGate | None = None, speed_of: Path | None = None,
                 backend: str = "eager"):
        self.resolution, self.store, self.gate, self.backend = resolution, Path(store), gate, backend
        self.settings = {"threads": threads, "min_run_time": min_run_time, "rounds": rounds, "seed": seed,
                         "batch_size": 1, "cell_merge": merge}
        if gate:
            self.settings["speed_of"] = {"lut": report_path(speed_of), "anchor_ms": gate.anchor_ms}
        fields = machine_fingerprint(threads, backend)
        self.fingerprint = {"id": fingerprint_id(fields), "fields": fields}
        self.journal = profile_journal(self.store, self.fingerprint["id"], resolution,
                                       {"resolution": resolution, **self.settings}, resume)
        done = self.journal.frame()
        self.finished = frozenset(zip(done["key"], done["round"]))  # (entry, round) pairs a resumed profile skips
        self.done, self.total = len(done), len(profiled_keys()) * rounds

    def measure(self) -> Iterator[ProfileMeasurement]:
        settings = self.settings
        for measurement in profile_space(self.resolution, threads=settings["threads"],
                                         min_run_time=settings["min_run_time"], rounds=settings["rounds"],
                                         merge=settings["cell_merge"], seed=settings["seed"], skip=self.finished,
                                         gate=self.gate, backend=self.backend):
            self.journal.append(measurement.as_record())
            yield measurement

    def close(self) -> None:
        """Keep the journal of finished measurements (an interrupted profile)."""
        self.journal.close()

    def save(self) -> LatencyTable:
        """The finished profile as the store's next table version; its journal is removed."""
        table = save_table(self.journal.frame(), resolution=self.resolution, fingerprint=self.fingerprint,
                           settings=self.settings, store=self.store)
        self.journal.close(remove=True)
        return table

"""The LUT against measurement: estimate vs. measured latency of sampled children (paper §4.1, Figure 4), and the
:class:`Stopwatch` that times any network in the table's units (``evaluate`` and ``compare``).

Children are sampled with a keep probability drawn per child, so cheap and rich networks are both represented; each
is built with only its selected modules and timed as the profile times its entries: in blocks alternating with the
reference network. Its ``paired_ms`` is that ratio times the LUT's reference anchor (milliseconds at the machine's
typical speed while profiling), its ``measured_ms`` the same brought to the table's speed with the calibration's
speed exponent (:meth:`lut.table.LatencyTable.measured_ms`; equal without one), and its raw median is kept as
``raw_ms``: the report gives all three. A child whose ratio
spread is large is measured again, the steadier run kept; with a :class:`~profiler.speed_gate.SpeedGate`, a child
timed while the machine ran in another speed state than its table's is set aside and timed again later. Rows are
appended to ``results.csv`` as they are measured, so a killed run resumes without losing or repeating a measurement.

With ``Harness.processes`` above 1 the run is cut into that many consecutive parts, each timed in a fresh process
(:func:`timed_in_new_process`), so that no one process's offset is the whole run's.

A share of the children (``Harness.repeat``) is timed a second time half a run later. Their two measurements disagree by
the machine's own noise, which is the floor any table can reach: the report sets the LUT's agreement beside the
repeat's on the same children, and takes the noise out of the LUT's error (:mod:`lut.agreement`).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from instanas.atomic import report_path
from instanas.errors import ArchitectureError, InstaNASError
from instanas.journal import CsvJournal
from instanas.metagraph import MetaGraph
from instanas.space import correlation_sample, few_kind_sample, format_architecture, parse_architecture
from lut.agreement import first_passes, measurement_plan, process_parts, repeated_children
from lut.report import RESULT_COLUMNS, write_report
from lut.table import fit_calibration
from profiler.allocator import current_allocator, set_allocator
from profiler.harness import Harness
from profiler.reference import reference_timer
from profiler.speed_gate import SpeedGate
from profiler.timing import PairedStats

CALIBRATION_STREAM = 1_000_003  # calibration seeds are offset by this, so they never reuse correlate's children
FEW_KINDS_STREAM = 7_919  # the few-kind children's seed is offset by this from the run's


@dataclass(frozen=True)
class Children:
    """The architectures a run measures, with a label each and what identifies them in the run's settings."""

    archs: np.ndarray
    labels: list[str]
    keep: np.ndarray  # the keep probability of a sampled child; NaN for a chosen one
    settings: dict

    @classmethod
    def sampled(cls, n: int, seed: int, few_kinds: float = 0.0) -> Children:
        """``n`` children of :func:`correlation_sample`; with ``few_kinds``, that share of them instead from
        :func:`few_kind_sample` (labelled with their kinds), placed at random through the run."""
        few = round(n * few_kinds)
        if not few:
            archs, keep = correlation_sample(n, seed)
            return cls(archs, [""] * n, keep, {"n": n, "seed": seed})
        random_archs, random_keep = correlation_sample(n - few, seed)
        few_archs, few_keep, kinds = few_kind_sample(few, seed + FEW_KINDS_STREAM)
        order = np.random.default_rng(seed).permutation(n)
        archs = np.concatenate([random_archs, few_archs])[order]
        keep = np.concatenate([random_keep, few_keep])[order]
        labels = [""] * (n - few) + ["kinds " + "+".join(chosen) for chosen in kinds]
        return cls(archs, [labels[i] for i in order], keep, {"n": n, "seed": seed, "few_kinds": few_kinds})

    @classmethod
    def from_file(cls, path: Path) -> Children:
        """One architecture string per line; ``# text`` after it labels it; blank and ``#`` lines are skipped."""
        try:
            lines = Path(path).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or error
            raise InstaNASError(f"{path}: cannot read architectures ({reason})") from None
        archs, labels = [], []
        for number, line in enumerate(lines, start=1):
            text, _, comment = line.partition("#")
            if not text.strip():
                continue
            try:
                archs.append(parse_architecture(text))
            except ArchitectureError as error:
                raise InstaNASError(f"{path}:{number}: {error}") from None
            labels.append(comment.strip() or f"line {number}")
        if len(archs) < 3:
            raise InstaNASError(f"{path}: {len(archs)} architectures; a correlation needs at least 3")
        digest = hashlib.sha256("\n".join(map(format_architecture, archs)).encode()).hexdigest()[:16]
        settings = {"n": len(archs), "archs": report_path(path), "archs_hash": digest}
        return cls(np.stack(archs), labels, np.full(len(archs), np.nan), settings)


@dataclass(frozen=True)
class ChildTiming:
    index: int
    stats: PairedStats
    attempts: int  # measurements of this child, the unsteady and the off-speed ones included
    wall_s: float  # wall time spent on this child (its share of its groups')

    def after(self, earlier: ChildTiming | None) -> ChildTiming:
        """This measurement, counting the attempts and wall time of an earlier one that was set aside."""
        if earlier is None:
            return self
        return ChildTiming(self.index, self.stats, self.attempts + earlier.attempts, self.wall_s + earlier.wall_s)


class ChildTimer:
    """Builds children of one meta-graph and times them, ``harness.group`` at a time, against the reference."""

    def __init__(self, resolution: int, harness: Harness, *, threads: int, merge: str, backend: str = "eager",
                 seed: int = 0):
        torch.manual_seed(seed)
        self.graph = MetaGraph(resolution, merge=merge).eval()
        self.input = torch.randn(1, 3, resolution, resolution)
        self.timer = reference_timer(threads, backend)
        self.harness = harness

    def _measure(self, archs: list[np.ndarray]) -> list[PairedStats]:
        harness = self.harness
        options = {"min_run_time": harness.min_run_time, "min_runs": harness.min_runs,
                   "warmup_calls": harness.warmup_calls}
        children = [(self.graph.child(arch), self.input) for arch in archs]
        if harness.group == 1:
            return [self.timer.measure(child, x, **options) for child, x in children]
        return self.timer.measure_group(children, **options)

    def _timed_group(self, archs: np.ndarray, group: list[int]) -> Iterator[ChildTiming]:
        """One group measured; children whose ratio spread is too large again, keeping the steadier result."""
        began = time.perf_counter()
        first = self._measure([archs[index] for index in group])
        unsteady = [k for k, stats in enumerate(first) if stats.ratio_iqr > self.harness.remeasure_iqr * stats.ratio]
        again = dict(zip(unsteady, self._measure([archs[group[k]] for k in unsteady]))) if unsteady else {}
        wall = (time.perf_counter() - began) / len(group)
        for k, index in enumerate(group):
            stats = min((first[k], again.get(k, first[k])), key=lambda result: result.ratio_iqr / result.ratio)
            yield ChildTiming(index, stats, 2 if k in again else 1, wall)

    def _timed_chunk(self, archs: np.ndarray, chunk: list[int]) -> Iterator[ChildTiming]:
        """Each child of ``chunk`` measured ``harness.passes`` times, ``harness.group`` at a time: the first pass in
        order, every later one in its own shuffled order (other neighbours, other reference blocks)."""
        passes: dict[int, list[ChildTiming]] = {index: [] for index in chunk}
        order = list(chunk)
        for number in range(self.harness.passes):
            if number:
                order = [order[k] for k in np.random.default_rng([number, *chunk[:1]]).permutation(len(order))]
            for start in range(0, len(order), self.harness.group):
                for timing in self._timed_group(archs, order[start:start + self.harness.group]):
                    passes[timing.index].append(timing)
        for index, timings in passes.items():
            yield ChildTiming(index, PairedStats.combined([timing.stats for timing in timings]),
                              sum(timing.attempts for timing in timings), sum(timing.wall_s for timing in timings))

    def run(self, archs: np.ndarray, indices: list[int], gate: SpeedGate | None = None) -> Iterator[ChildTiming]:
        """Measure ``indices``, ``harness.chunk`` at a time; with a ``gate``, only while the machine is at speed."""
        queue = deque(indices)
        set_aside: dict[int, ChildTiming] = {}
        while queue:
            chunk = [queue.popleft() for _ in range(min(self.harness.chunk, len(queue)))]
            admitted = True
            for timing in self._timed_chunk(archs, chunk):
                if gate is None or gate.admits(timing.stats.reference_ms, timing.wall_s):
                    yield timing.after(set_aside.pop(timing.index, None))
                else:
                    set_aside[timing.index] = timing.after(set_aside.get(timing.index))
                    queue.append(timing.index)
                    admitted = False
            if not admitted:
                gate.pause()


def timed_in_new_process(timer_settings: dict, archs: np.ndarray, indices: list[int],
                         gate: SpeedGate | None = None) -> Iterator[ChildTiming]:
    """:meth:`ChildTimer.run` in a fresh (spawned) process, each timing passed back as it is made: the same networks
    (the same seed), none of this process's warm caches, allocator history or thread pool. The speed gate travels
    there and its waiting back; an interrupt stops both processes."""
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    on_wait = gate.on_wait if gate else None
    if gate:
        gate.on_wait = None  # a callback of this process does not travel
    worker = context.Process(target=_timing_process, daemon=True,
                             args=(sending, timer_settings, current_allocator(), archs, indices, gate))
    worker.start()
    sending.close()
    if gate:
        gate.on_wait = on_wait
    try:
        while True:
            try:
                kind, payload, *waited = receiving.recv()
            except EOFError:
                worker.join()
                raise InstaNASError(f"the timing process ended before its children were timed (exit code "
                                    f"{worker.exitcode})") from None
            if gate and waited:
                gate.waited_s, gate.set_aside = waited
            if kind == "timing":
                yield payload
            elif kind == "wait" and on_wait:
                on_wait(*payload)
            elif kind == "error":
                raise InstaNASError(f"the timing process failed: {payload}")
            elif kind == "done":
                return
    finally:
        receiving.close()
        if worker.is_alive():
            worker.terminate()
        worker.join()


def _timing_process(sending, timer_settings: dict, allocator: str, archs: np.ndarray, indices: list[int],
                    gate: SpeedGate | None) -> None:
    set_allocator(allocator)
    counts = lambda: (gate.waited_s, gate.set_aside) if gate else ()  # noqa: E731
    try:
        if gate:
            gate.on_wait = lambda reference_ms, waited_s: sending.send(("wait", (reference_ms, waited_s), *counts()))
        for timing in ChildTimer(**timer_settings).run(archs, indices, gate):
            sending.send(("timing", timing, *counts()))
        sending.send(("done", None, *counts()))
    except (KeyboardInterrupt, BrokenPipeError):  # the parent was interrupted too, or killed: it kept what it got
        pass
    except Exception as error:  # noqa: BLE001 — said in one line by the parent
        sending.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        sending.close()


def calibration_from_results(table, results_csv, model: str = "entries", speed_correction: bool = True,
                             weighting: str = "absolute", repeats: bool = True) -> dict:
    """Fit ``table``'s calibration on measured children (``results.csv`` of a run); with ``speed_correction``, also a
    speed exponent, on the same children. Runs made before ``paired_ms`` existed measured it as
    ``measured_ms``. Only first measurements count (a repeat is the noise's, not another child)."""
    frame = first_passes(pd.read_csv(results_csv))
    archs = np.stack([parse_architecture(text) for text in frame["arch"]])
    paired = frame["paired_ms"] if "paired_ms" in frame else frame["measured_ms"]
    reference = frame["reference_ms"].to_numpy() if speed_correction else None
    fit = fit_calibration(table, archs, paired.to_numpy(), model, reference, weighting, repeats)
    return fit | {"reference_ms": float(frame["reference_ms"].median())}  # where the validation's speed gate centres


class CorrelationRun:
    """One validation run in ``out_dir``: opening it checks the settings (and, resumed, that they match)."""

    def __init__(self, table, out_dir, children: Children, harness: Harness, *, mode: str, resume: bool,
                 wait_for_speed_s: float = 0.0):
        table.check_reference()
        self.table, self.out_dir, self.children, self.mode = table, Path(out_dir), children, mode
        self.n = len(children.archs)
        self.repeated = repeated_children(self.n, harness.repeat)
        self.total = self.n + len(self.repeated)  # measurements, the repeats included
        self.settings = {
            "resolution": table.resolution,
            **children.settings,
            "threads": table.threads,
            **harness.settings(),
            "mode": mode,
            "lut": report_path(table.path),
            "lut_hash": table.content_hash,
        }
        self.estimates = table.estimate(children.archs, mode=mode)
        self.results = CsvJournal(
            self.out_dir / "results.csv", RESULT_COLUMNS, self.settings, self.out_dir / "run.json", resume
        )
        done = self.results.frame()
        self.finished = {self._measurement(index, repeat) for index, repeat in zip(done["index"], done["repeat"])}
        first = done[done["repeat"] == 0]
        self.measured = dict(zip(first["index"], first["measured_ms"]))  # first measurements: the running Pearson
        self.harness = harness
        self.timer_settings = {"resolution": table.resolution, "harness": harness, "threads": table.threads,
                               "merge": table.cell_merge, "backend": table.backend}
        self.timer = ChildTimer(**self.timer_settings) if harness.processes == 1 else None
        self.gate = SpeedGate(table.children_reference_ms, wait_for_speed_s) if wait_for_speed_s > 0 else None
        if self.gate and resume:
            self.gate.resume(self._gate_file)
        self.wall_s = 0.0

    @property
    def _gate_file(self) -> Path:
        """The speed gate's counts so far: a resumed run continues its wait and reports the whole run's."""
        return self.out_dir / "speed_gate.json"

    def measure(self, on_row=None, on_wait=None) -> None:
        """Take every measurement not yet in ``results.csv`` (:func:`measurement_plan`); ``on_row(done, total,
        pearson_so_far)`` after each, ``on_wait(reference_ms, waited_s)`` while the speed gate waits for the machine."""
        started = time.perf_counter()
        if self.gate:
            self.gate.on_wait = on_wait
        archs = np.concatenate([self.children.archs, self.children.archs[self.repeated]])
        parts = process_parts(measurement_plan(self.n, self.repeated), self.n, self.harness.processes)
        try:
            for process, part in enumerate(parts):
                remaining = [m for m in part if m not in self.finished]
                if not remaining:
                    continue
                timings = (self.timer.run(archs, remaining, self.gate) if self.timer else
                           timed_in_new_process(self.timer_settings, archs, remaining, self.gate))
                for timing in timings:
                    self._record(timing, process)
                    if on_row:
                        on_row(len(self.finished), self.total, self._running_pearson())
        finally:
            self.wall_s += time.perf_counter() - started
            self.results.close()
            if self.gate:
                self.gate.save(self._gate_file)

    def _measurement(self, index: int, repeat: int) -> int:
        """The measurement's number in :func:`measurement_plan`."""
        return self.n + int(np.searchsorted(self.repeated, index)) if repeat else int(index)

    def _record(self, timing: ChildTiming, process: int) -> None:
        repeat = timing.index >= self.n
        i = int(self.repeated[timing.index - self.n]) if repeat else timing.index
        measured = float(self.table.measured_ms(timing.stats.ratio, timing.stats.reference_ms))
        if not repeat:
            self.measured[i] = measured
        self.finished.add(timing.index)
        self.results.append(
            {
                "index": i,
                "repeat": int(repeat),
                "arch": format_architecture(self.children.archs[i]),
                "label": self.children.labels[i],
                "keep": round(float(self.children.keep[i]), 4),
                "estimate_ms": float(self.estimates[i]),
                "measured_ms": measured,
                "paired_ms": timing.stats.ratio * self.table.anchor_ms,
                "raw_ms": timing.stats.median_ms,
                "reference_ms": timing.stats.reference_ms,
                "ratio_iqr": timing.stats.ratio_iqr,
                "runs": timing.stats.runs,
                "attempts": timing.attempts,
                "wall_s": round(timing.wall_s, 4),
                "process": process,
            }
        )

    def _running_pearson(self) -> float:
        if len(self.measured) < 3:
            return float("nan")
        indices = np.fromiter(self.measured, dtype=int)
        return float(np.corrcoef(self.estimates[indices], np.fromiter(self.measured.values(), dtype=float))[0, 1])

    def finish(self) -> dict:
        """Write ``report.json`` and ``scatter.png`` from every finished row; return the report."""
        return write_report(self.table, self.out_dir, self.settings, self.mode, round(self.wall_s, 1),
                            self.gate.report() if self.gate else None)


class Stopwatch:
    """Measured ms of modules: paired with the reference network in the LUT's backend, converted with the LUT's anchor
    and speed exponent (its units: :meth:`lut.table.LatencyTable.measured_ms`)."""

    def __init__(self, table, *, threads: int | None = None, min_run_time: float = 0.2):
        table.check_reference()
        self.timer = reference_timer(threads or table.threads, table.backend)
        self.table, self.min_run_time = table, min_run_time

    def __call__(self, module: torch.nn.Module, example_input) -> float:
        timed = self.timer.measure(module.eval(), example_input, min_run_time=self.min_run_time)
        return float(self.table.measured_ms(timed.ratio, timed.reference_ms))

    def images(self, networks: dict[str, torch.nn.Module], resolution: int) -> dict[str, float]:
        """Each network on one image."""
        image = torch.randn(1, 3, resolution, resolution)
        return {name: self(network, image) for name, network in networks.items()}

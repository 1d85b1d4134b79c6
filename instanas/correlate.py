"""LUT estimate vs. measured latency of sampled children (paper §4.1, Figure 4).

Children are sampled with a keep probability drawn per child, so cheap and rich networks are both represented; each
is built with only its selected modules and timed as the profile times its entries: in blocks alternating with the
reference network. Its ``measured_ms`` is that ratio times the LUT's reference anchor (milliseconds at the machine's
typical speed while profiling), and its raw median is kept as ``raw_ms``: the report gives both. A child whose ratio
spread is large is measured again, the steadier run kept. Rows are appended to ``results.csv`` as they are measured,
so a killed run resumes without losing or repeating a measurement.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from instanas.atomic import atomic_write, report_path
from instanas.plots import png_figure
from instanas.journal import CsvJournal
from instanas.metagraph import MetaGraph
from instanas.space import format_architecture, parse_architecture, sample_architectures
from lut.table import fit_calibration
from profiler.reference import reference_timer
from profiler.timing import PairedStats

CALIBRATION_STREAM = 1_000_003  # calibration seeds are offset by this, so they never reuse correlate's children
RESULT_COLUMNS = [
    "index", "arch", "keep", "estimate_ms", "measured_ms", "raw_ms", "reference_ms", "ratio_iqr", "runs", "attempts",
]


def correlation_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` architectures and the keep probability each was drawn with (uniform in [0.05, 0.95])."""
    rng = np.random.default_rng(seed)
    keep = rng.uniform(0.05, 0.95, n)
    return sample_architectures(n, keep=keep, seed=int(rng.integers(2**32))), keep


@dataclass(frozen=True)
class ChildTiming:
    index: int
    stats: PairedStats
    attempts: int


class ChildTimer:
    """Builds children of one meta-graph and times each against the reference network."""

    def __init__(self, resolution: int, *, threads: int, min_run_time: float, remeasure_iqr: float, merge: str,
                 seed: int = 0):
        torch.manual_seed(seed)
        self.graph = MetaGraph(resolution, merge=merge).eval()
        self.input = torch.randn(1, 3, resolution, resolution)
        self.timer = reference_timer(threads)
        self.min_run_time, self.remeasure_iqr = min_run_time, remeasure_iqr

    def _measure(self, arch: np.ndarray) -> PairedStats:
        return self.timer.measure(self.graph.child(arch), self.input, min_run_time=self.min_run_time)

    def time(self, index: int, arch: np.ndarray) -> ChildTiming:
        """Measure once; if the ratio's IQR exceeds ``remeasure_iqr`` of it, again, keeping the steadier result."""
        first = self._measure(arch)
        if first.ratio_iqr <= self.remeasure_iqr * first.ratio:
            return ChildTiming(index, first, 1)
        second = self._measure(arch)
        steadier = min(first, second, key=lambda result: result.ratio_iqr / result.ratio)
        return ChildTiming(index, steadier, 2)

    def run(self, archs: np.ndarray, indices: list[int]) -> Iterator[ChildTiming]:
        for index in indices:
            yield self.time(index, archs[index])


def agreement(estimate: np.ndarray, measured: np.ndarray) -> dict:
    """How well estimates match measurements: correlations, errors, shares within ±5/±10 %, and the linear fit."""
    estimate, measured = np.asarray(estimate, dtype=float), np.asarray(measured, dtype=float)
    relative = (estimate - measured) / measured
    fit = stats.linregress(estimate, measured)
    ratio = measured / estimate
    return {
        "n": int(len(measured)),
        "pearson": float(stats.pearsonr(estimate, measured).statistic),
        "spearman": float(stats.spearmanr(estimate, measured).statistic),
        "kendall": float(stats.kendalltau(estimate, measured).statistic),
        "rmse_ms": float(np.sqrt(np.mean((estimate - measured) ** 2))),
        "mape_pct": float(100 * np.mean(np.abs(relative))),
        "within_5pct": float(np.mean(np.abs(relative) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(relative) <= 0.10)),
        "slope": float(fit.slope),
        "intercept": float(fit.intercept),
        "measured_over_estimate_p5_p50_p95": [float(v) for v in np.percentile(ratio, [5, 50, 95])],
    }


def calibration_from_results(results_csv) -> dict:
    """Fit the LUT calibration on measured children (their plain estimates, module counts and latencies)."""
    frame = pd.read_csv(results_csv)
    modules = np.array([parse_architecture(text).sum() for text in frame["arch"]])
    return fit_calibration(frame["estimate_ms"].to_numpy(), modules, frame["measured_ms"].to_numpy())


def scatter_plot(results: pd.DataFrame, report: dict, path) -> None:
    """Estimated vs. measured latency with y = x and the least-squares fit, like the paper's Figure 4."""
    with png_figure(path, (6, 6)) as axes:
        axes.scatter(results["estimate_ms"], results["measured_ms"], s=4, alpha=0.4, edgecolors="none", label="children")
        low = min(results["estimate_ms"].min(), results["measured_ms"].min())
        high = max(results["estimate_ms"].max(), results["measured_ms"].max())
        line = np.array([low, high])
        axes.plot(line, line, color="black", linewidth=1, label="y = x")
        axes.plot(
            line,
            report["slope"] * line + report["intercept"],
            color="tab:red",
            linewidth=1,
            label=f"fit: {report['slope']:.3f}·x {report['intercept']:+.2f} ms",
        )
        axes.set_xlabel("LUT estimate (ms)")
        axes.set_ylabel("measured latency (ms)")
        axes.set_title(
            f"{report['resolution']} px, {report['mode']} LUT, n = {report['n']}\n"
            f"Pearson {report['pearson']:.4f}, MAPE {report['mape_pct']:.1f} %, "
            f"±10 %: {100 * report['within_10pct']:.1f} %"
        )
        axes.legend(loc="upper left")
        axes.grid(alpha=0.3)


class CorrelationRun:
    """One validation run in ``out_dir``: opening it checks the settings (and, resumed, that they match)."""

    def __init__(
        self,
        table,
        out_dir,
        *,
        n: int,
        seed: int,
        min_run_time: float,
        mode: str,
        resume: bool,
        remeasure_iqr: float = 0.2,
    ):
        table.check_reference()
        self.table, self.out_dir, self.n, self.mode = table, Path(out_dir), n, mode
        self.settings = {
            "resolution": table.resolution,
            "n": n,
            "seed": seed,
            "threads": table.threads,
            "min_run_time": min_run_time,
            "remeasure_iqr": remeasure_iqr,
            "mode": mode,
            "lut": report_path(table.path),
            "lut_hash": table.content_hash,
        }
        self.archs, self.keep = correlation_sample(n, seed)
        self.estimates = table.estimate(self.archs, mode=mode)
        self.results = CsvJournal(
            self.out_dir / "results.csv", RESULT_COLUMNS, self.settings, self.out_dir / "run.json", resume
        )
        done = self.results.frame()
        self.measured = dict(zip(done["index"], done["measured_ms"]))
        self.timer = ChildTimer(
            table.resolution, threads=table.threads, min_run_time=min_run_time, remeasure_iqr=remeasure_iqr,
            merge=table.cell_merge,
        )
        self.wall_s = 0.0

    def measure(self, on_row=None) -> None:
        """Measure every child not yet in ``results.csv``; ``on_row(done, total, pearson_so_far)`` after each."""
        started = time.perf_counter()
        try:
            remaining = [index for index in range(self.n) if index not in self.measured]
            for timing in self.timer.run(self.archs, remaining):
                self._record(timing)
                if on_row:
                    on_row(len(self.measured), self.n, self._running_pearson())
        finally:
            self.wall_s += time.perf_counter() - started
            self.results.close()

    def _record(self, timing: ChildTiming) -> None:
        i = timing.index
        self.results.append(
            {
                "index": i,
                "arch": format_architecture(self.archs[i]),
                "keep": round(float(self.keep[i]), 4),
                "estimate_ms": float(self.estimates[i]),
                "measured_ms": timing.stats.ratio * self.table.anchor_ms,
                "raw_ms": timing.stats.median_ms,
                "reference_ms": timing.stats.reference_ms,
                "ratio_iqr": timing.stats.ratio_iqr,
                "runs": timing.stats.runs,
                "attempts": timing.attempts,
            }
        )
        self.measured[i] = timing.stats.ratio * self.table.anchor_ms

    def _running_pearson(self) -> float:
        if len(self.measured) < 3:
            return float("nan")
        indices = np.fromiter(self.measured, dtype=int)
        return float(np.corrcoef(self.estimates[indices], np.fromiter(self.measured.values(), dtype=float))[0, 1])

    def finish(self) -> dict:
        """Write ``report.json`` and ``scatter.png`` from every finished row; return the report."""
        frame = pd.read_csv(self.out_dir / "results.csv").sort_values("index")
        table = self.table
        modes = ["plain", "calibrated"] if table.calibration else ["plain"]
        archs = self.archs[frame["index"]]
        by_mode = {name: agreement(table.estimate(archs, mode=name), frame["measured_ms"]) for name in modes}
        report = {
            "resolution": table.resolution,
            "mode": self.mode,
            **by_mode[self.mode],
            "by_mode": by_mode,
            "raw": agreement(table.estimate(archs, mode=self.mode), frame["raw_ms"]),
            "remeasured": int((frame["attempts"] > 1).sum()),
            "lut": {"path": report_path(table.path), "version": table.version, "content_hash": table.content_hash},
            "fingerprint": table.meta["fingerprint"],
            "settings": self.settings,
            "measure_wall_s_this_session": round(self.wall_s, 1),
        }
        report["reference_ms"] = {
            "lut_anchor": table.anchor_ms,
            "p5_p50_p95_this_run": [float(value) for value in np.percentile(frame["reference_ms"], [5, 50, 95])],
        }
        atomic_write(self.out_dir / "report.json", json.dumps(report, indent=2) + "\n")
        scatter_plot(frame, report, self.out_dir / "scatter.png")
        return report

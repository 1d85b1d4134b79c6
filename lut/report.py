"""The report of a validation run, written from its ``results.csv``: for the table it was timed against
(:meth:`lut.validation.CorrelationRun.finish`) or for another version of that table's profile (:func:`rescore`,
`instanas rescore`), whose estimates and speed exponent change while the measurements stay.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from instanas.atomic import atomic_write, report_path
from instanas.errors import ArchitectureError, InstaNASError
from instanas.lock import FileLock
from instanas.plots import png_figure
from instanas.space import parse_architecture
from lut.agreement import (
    agreement,
    at_table_speed,
    by_module_count,
    first_passes,
    module_count_trend,
    repeat_report,
    repeated_pairs,
)

RESULT_COLUMNS = [
    "index", "repeat", "arch", "label", "keep", "estimate_ms", "measured_ms", "paired_ms", "raw_ms", "reference_ms",
    "ratio_iqr", "runs", "attempts", "wall_s", "process",
]


def write_report(table, out_dir: Path, settings: dict, mode: str, wall_s: float, gate_report: dict | None) -> dict:
    """``report.json`` and ``scatter.png`` of the run in ``out_dir`` from every row of its ``results.csv``, scored
    against ``table``; returns the report."""
    every = pd.read_csv(out_dir / "results.csv")
    frame = first_passes(every)
    modes = ["plain", "calibrated"] if table.calibration else ["plain"]
    archs = np.stack([parse_architecture(text) for text in frame["arch"]])
    estimates = {name: table.estimate(archs, mode=name) for name in modes}
    by_mode = {name: agreement(estimates[name], frame["measured_ms"]) for name in modes}
    report = {
        "resolution": table.resolution,
        "mode": mode,
        **by_mode[mode],
        "by_mode": by_mode,
        "raw": agreement(estimates[mode], frame["raw_ms"]),
        "paired": agreement(estimates[mode], frame["paired_ms"]),
        "speed_exponent": table.speed_exponent,
        "remeasured": int((frame["attempts"] > 1).sum()),
        "lut": {"path": report_path(table.path), "version": table.version, "content_hash": table.content_hash,
                "backend": table.backend},
        "fingerprint": table.meta["fingerprint"],
        "settings": settings,
        "measure_wall_s_this_session": wall_s,
        "wall_s_per_child": float(every["wall_s"].sum() / len(frame)),  # the repeats' share included
    }
    report["reference_ms"] = {
        "lut_anchor": table.anchor_ms,
        "at_table_speed": table.children_reference_ms,
        "p5_p50_p95_this_run": [float(value) for value in np.percentile(frame["reference_ms"], [5, 50, 95])],
    }
    report["at_table_speed"] = at_table_speed(estimates[mode], frame, table.children_reference_ms)
    pairs = repeated_pairs(every)
    report["repeat"] = repeat_report(estimates[mode], frame["measured_ms"], pairs)
    second = frame[["index"]].merge(pairs, on="index", how="left")["second_ms"].to_numpy(dtype=float)
    report["by_module_count"] = by_module_count(archs, estimates[mode], frame["measured_ms"], second)
    report["module_count_trend"] = module_count_trend(archs, estimates[mode], frame["measured_ms"])
    report["speed_gate"] = gate_report
    if "archs" in settings:  # chosen architectures: each one's own figures
        report["children"] = [
            {"label": row.label, "arch": row.arch, "estimate_ms": float(estimate), "measured_ms": row.measured_ms,
             "error_pct": 100 * (float(estimate) / row.measured_ms - 1)}
            for row, estimate in zip(frame.itertuples(), estimates[mode])
        ]
    atomic_write(out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    scatter_plot(frame, report, out_dir / "scatter.png")
    return report


def rescore(run_dir: Path, table, out_dir: Path, mode: str) -> dict:
    """Score ``table`` against the measurements of the finished run in ``run_dir``, written as a run of its own to
    ``out_dir``: a recalibrated table checked on children already timed, without timing them again.

    A measurement is a ratio to the reference network (``paired_ms`` = ratio · the anchor of the table it was
    timed against), so it holds for any table of the same profile: the same anchor. ``measured_ms`` is recomputed
    with ``table``'s speed exponent, ``estimate_ms`` with its estimate.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    try:
        old = json.loads((run_dir / "report.json").read_text())
        settings = json.loads((run_dir / "run.json").read_text())
        every = pd.read_csv(run_dir / "results.csv")
        anchor, resolution = float(old["reference_ms"]["lut_anchor"]), old["resolution"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InstaNASError(f"{run_dir}: not a finished correlate or calibrate run ({error!r})") from None
    if "paired_ms" not in every or "reference_ms" not in every:
        raise InstaNASError(f"{run_dir / 'results.csv'}: measured before paired timing; it cannot be rescored")
    if out_dir.resolve() == run_dir.resolve() or _holds_measurements(out_dir):
        raise InstaNASError(f"{out_dir}: holds measurements; rescoring writes a run folder of its own (another --out)")
    if resolution != table.resolution or not np.isclose(anchor, table.anchor_ms, rtol=1e-9, atol=0):
        raise InstaNASError(
            f"{table.path}: another profile than the one {run_dir} was measured against ({resolution} px, "
            f"reference {anchor:.4f} ms; this table {table.resolution} px, {table.anchor_ms:.4f} ms): rescore with a "
            f"version of that profile")
    try:
        archs = np.stack([parse_architecture(text) for text in every["arch"]])
    except ArchitectureError as error:
        raise InstaNASError(f"{run_dir / 'results.csv'}: {error}") from None
    every["measured_ms"] = table.measured_ms(every["paired_ms"] / anchor, every["reference_ms"])
    every["estimate_ms"] = table.estimate(archs, mode=mode)
    settings = settings | {"mode": mode, "lut": report_path(table.path), "lut_hash": table.content_hash,
                           "rescored_from": report_path(run_dir)}
    out_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(out_dir / "results.csv.lock", str(out_dir / "results.csv")):
        atomic_write(out_dir / "run.json", json.dumps(settings, indent=1) + "\n")
        atomic_write(out_dir / "results.csv", every.reindex(columns=RESULT_COLUMNS).to_csv(index=False))
        return write_report(table, out_dir, settings, mode, 0.0, old.get("speed_gate"))


def _holds_measurements(folder: Path) -> bool:
    """Whether ``folder`` holds a measured run (a rescored one may be written again)."""
    if not (folder / "results.csv").exists():
        return False
    try:
        return "rescored_from" not in json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return True


def scatter_plot(results: pd.DataFrame, report: dict, path) -> None:
    """Estimated vs. measured latency with y = x and the least-squares fit, like the paper's Figure 4; with a
    repeat share, the band two measurements of one child span (±1.96 σ of one measurement's noise)."""
    with png_figure(path, (6, 6)) as axes:
        axes.scatter(results["estimate_ms"], results["measured_ms"], s=4, alpha=0.4, edgecolors="none",
                     label="children")
        low = min(results["estimate_ms"].min(), results["measured_ms"].min())
        high = max(results["estimate_ms"].max(), results["measured_ms"].max())
        line = np.array([low, high])
        if noise := report.get("repeat"):
            spread = np.exp(1.96 * noise["noise_pct"] / 100)
            axes.fill_between(line, line / spread, line * spread, color="tab:green", alpha=0.15, linewidth=0,
                              label=f"measurement noise ±1.96σ ({noise['noise_pct']:.1f} %, {noise['pairs']} repeats)")
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

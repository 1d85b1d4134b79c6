"""Issue 34's targets, read from the validations in a folder: each run's agreement beside its repeat's, the LUT's
error with the measurement's noise taken out, every module-count fifth, and the edges.

    python docs/results/validation-noise/summary.py docs/results/validation-noise > docs/results/validation-noise/summary.md

Reads ``correlate-<R>[-<backend>]/report.json`` (and ``results.csv`` for the error across module counts where the
report predates it) and ``edges-<R>/results.csv``; prints Markdown.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from instanas.space import parse_architecture
from lut.agreement import first_passes, module_count_trend, stale_calibration

EDGE_LIMIT, FIFTH_LIMIT, FIFTH_SHARE, CORRECTED_LIMIT, SECONDS_PER_CHILD_32 = 0.07, 0.10, 0.99, 1.0, 0.15


def pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def folders(root: Path, pattern: str) -> list[Path]:
    """Runs by resolution, then backend (correlate-32, correlate-32-onnxruntime, correlate-64, …)."""
    return sorted(root.glob(pattern), key=lambda path: (len(path.name), path.name))


def spread(repeat: dict) -> float:
    """The noise-corrected error without the whole run's offset (``corrected_spread_pct``); reports written before
    that field have the same figure as sqrt(corrected² − bias²) = sqrt(var(e) − mean(d²)/2)."""
    if "corrected_spread_pct" in repeat:
        return repeat["corrected_spread_pct"]
    return max(repeat["corrected_rms_pct"] ** 2 - repeat["lut_bias_pct"] ** 2, 0.0) ** 0.5


def validation_rows(root: Path) -> list[str]:
    rows = ["| run | n | Pearson | MAPE | LUT ±5 % / ±10 % | repeat ±5 % / ±10 % (pairs) | LUT ±5 % on those children "
            "| one measurement's noise | LUT RMS error | with the noise taken out (95 %) | of which bias / spread "
            "| worst fifth ±10 % | s / child |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for folder in folders(root, "correlate-*"):
        report = json.loads((folder / "report.json").read_text())
        repeat = report.get("repeat")
        fifths = report.get("by_module_count") or []
        worst = min(fifths, key=lambda row: row["within_10pct"]) if fifths else None
        if repeat:
            low, high = repeat["corrected_rms_interval_pct"]
            noise = (f"{pct(repeat['repeat']['within_5pct'])} / {pct(repeat['repeat']['within_10pct'])} "
                     f"({repeat['pairs']})", pct(repeat["lut_same_children"]["within_5pct"]),
                     f"{repeat['noise_pct']:.2f} %", f"{repeat['lut_rms_pct']:.2f} %",
                     f"**{repeat['corrected_rms_pct']:.2f} %** ({low:.2f}–{high:.2f} %)",
                     f"{repeat['lut_bias_pct']:+.2f} % / {spread(repeat):.2f} %")
        else:
            noise = ("—",) * 6
        rows.append(" | ".join([
            f"| {folder.name}", str(report["n"]), f"{report['pearson']:.4f}", f"{report['mape_pct']:.2f} %",
            f"{pct(report['within_5pct'])} / {pct(report['within_10pct'])}", *noise,
            f"{pct(worst['within_10pct'])} ({worst['modules']} modules)" if worst else "—",
            f"{report['wall_s_per_child']:.3f} |"]))
    return rows


def fifth_rows(root: Path) -> list[str]:
    rows = ["| run | fifth (modules) | n | ±5 % | ±10 % | MAPE | bias | repeat ±5 % |", "|---|---|---|---|---|---|---|---|"]
    for folder in folders(root, "correlate-*"):
        for row in json.loads((folder / "report.json").read_text()).get("by_module_count") or []:
            repeat = pct(row["repeat"]["within_5pct"]) if "repeat" in row else "—"
            rows.append(f"| {folder.name} | {row['modules']} | {row['n']} | {pct(row['within_5pct'])} | "
                        f"{pct(row['within_10pct'])} | {row['mape_pct']:.2f} % | {row['bias_pct']:+.2f} % | {repeat} |")
    return rows


def trend_rows(root: Path) -> list[str]:
    """The LUT's error across module counts (``module_count_trend``): a calibration of another state of the machine
    tilts it; reports written before the field get it from their ``results.csv``."""
    rows = ["| run | error from the sparsest to the densest fifth's middle (95 %) | calibrate again? |", "|---|---|---|"]
    for folder in folders(root, "correlate-*"):
        report = json.loads((folder / "report.json").read_text())
        trend = report.get("module_count_trend")
        if trend is None and (folder / "results.csv").exists():  # few-kinds/ commits some reports alone
            results = first_passes(pd.read_csv(folder / "results.csv"))
            archs = np.stack([parse_architecture(text) for text in results["arch"]])
            trend = module_count_trend(archs, results["estimate_ms"], results["measured_ms"])
        if trend:
            low, high = trend["change_interval_pct"]
            rows.append(f"| {folder.name} | {trend['from_modules']:.0f} → {trend['to_modules']:.0f} modules: "
                        f"{trend['change_pct']:+.2f} % ({low:+.2f} to {high:+.2f} %) | "
                        f"{'yes' if stale_calibration(trend, report['mode']) else 'no'} |")
    return rows


def edge_rows(root: Path) -> list[str]:
    rows = ["| edges | n | within ±7 % | worst (label, error) |", "|---|---|---|---|"]
    for folder in folders(root, "edges-*"):
        if not (folder / "results.csv").exists():
            continue
        results = pd.read_csv(folder / "results.csv")
        results = results[results["repeat"] == 0] if "repeat" in results else results
        error = results["estimate_ms"] / results["measured_ms"] - 1
        worst = error.abs().idxmax()
        rows.append(f"| {folder.name} | {len(results)} | {pct((error.abs() <= EDGE_LIMIT).mean())} | "
                    f"{results.loc[worst, 'label']} {100 * error[worst]:+.1f} % |")
    return rows


def main(root: Path) -> None:
    print(f"Targets (issue 34): LUT RMS error with the noise taken out ≤ {CORRECTED_LIMIT:.1f} % and the LUT's ±5 % "
          f"share ≥ the repeat's; every fifth ≥ {pct(FIFTH_SHARE)} within ±{FIFTH_LIMIT:.0%}; every edge within "
          f"±{EDGE_LIMIT:.0%}; ≤ {SECONDS_PER_CHILD_32} s per child at 32 px.\n")
    for table in (validation_rows(root), fifth_rows(root), trend_rows(root), edge_rows(root)):
        print("\n".join(table) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

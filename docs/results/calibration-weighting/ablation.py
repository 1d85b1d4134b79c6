"""Issue 34: the calibration fitted on milliseconds (``--weighting absolute``, the default) or on relative errors
(``relative``), each on a folder's calibration children, scored on its validation children and its
edges (the same measurements; only the fit differs) per module-count fifth.

Measurements are brought to the table's speed with each fit's own speed exponent (from ``paired_ms`` and
``reference_ms``), as ``correlate`` would have with that table.

Usage (repository root): python docs/results/calibration-weighting/ablation.py > docs/results/calibration-weighting/table.md

Fitted without kind repeats (``repeats=False``), as these tables were: their calibration children hold none of
the few-kind children that term needs (``docs/results/validation-noise/few-kinds/``).
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from instanas.space import parse_architecture
from lut.agreement import by_module_count, errors, first_passes, module_counts
from lut.store import load_table
from lut.table import CALIBRATION_WEIGHTINGS, fit_calibration, to_table_speed

RESULTS = Path("docs/results")
FOLDERS = ["correlate-32", "correlate-64", "correlate-224", "xeon/correlate-32", "xeon/correlate-64",
           "xeon/correlate-224"]


def children(path: Path) -> tuple[np.ndarray, pd.DataFrame]:
    frame = first_passes(pd.read_csv(path))
    if "paired_ms" not in frame:  # measured before the speed exponent: measured_ms is the pairing
        frame["paired_ms"] = frame["measured_ms"]
    if "reference_ms" not in frame:
        frame["reference_ms"] = np.nan
    return np.stack([parse_architecture(text) for text in frame["arch"]]), frame


def measured(table, frame: pd.DataFrame, exponent: float) -> np.ndarray:
    if not exponent:
        return frame["paired_ms"].to_numpy()
    return to_table_speed(frame["paired_ms"], frame["reference_ms"], table.anchor_ms, exponent)


def plain_table(folder: Path):
    """The plain table the folder's committed calibrated table was fitted on, and that calibration's settings."""
    calibrated = json.loads((folder / "report.json").read_text())["lut"]["path"]
    table = load_table(folder / Path(calibrated).name)
    source = table.meta["calibration"]
    plain = sorted(folder.glob(f"res{table.resolution}-v*.json"), key=lambda path: int(path.stem.split("-v")[1]))
    base = next(load_table(path) for path in plain if not load_table(path).meta.get("calibration"))
    return base, source


print(__doc__.split("\n\nUsage")[0].replace("Issue 34: t", "# Calibration weighting (issue 34)\n\nT", 1))
print("\nMade by `python docs/results/calibration-weighting/ablation.py` from the committed measurements; the fifths "
      "are of the validation children's module counts, sparsest first (each one's share within ±5 %).\n")
print("| folder | weighting | calibration children | validation ±5 % | ±10 % | MAPE | fifths ±5 % | sparsest fifth: bias, spread | edges ±5 % | worst edge |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name in FOLDERS:
    folder = RESULTS / name
    if not (folder / "calibration" / "results.csv").exists() or not (folder / "results.csv").exists():
        continue
    table, source = plain_table(folder)
    calibration_archs, calibration = children(folder / "calibration" / "results.csv")
    validation_archs, validation = children(folder / "results.csv")
    edges = children(folder / "edges" / "results.csv") if (folder / "edges" / "results.csv").exists() else None
    for weighting in CALIBRATION_WEIGHTINGS:
        fit = fit_calibration(table, calibration_archs, calibration["paired_ms"].to_numpy(), source["model"],
                              calibration["reference_ms"].to_numpy() if "speed_exponent" in source else None,
                              weighting, repeats=False)
        table.meta["calibration"] = fit
        exponent = fit.get("speed_exponent", 0.0)
        truth = measured(table, validation, exponent)
        estimate = table.estimate(validation_archs, mode="calibrated")
        overall = errors(estimate, truth)
        parts = by_module_count(validation_archs, estimate, truth)
        fifths = " / ".join(f"{100 * part['within_5pct']:.0f}" for part in parts)
        sparse = module_counts(validation_archs) <= int(parts[0]["modules"].split("–")[1])
        log_error = np.log(estimate[sparse] / truth[sparse])
        sparsest = f"{100 * log_error.mean():+.2f} %, {100 * log_error.std():.2f} %"
        edge_text = worst = "–"
        if edges is not None:
            edge_estimate = table.estimate(edges[0], mode="calibrated")
            edge_truth = measured(table, edges[1], exponent)
            edge_text = f"{100 * errors(edge_estimate, edge_truth)['within_5pct']:.0f} %"
            worst = f"{100 * np.max(np.abs(edge_estimate / edge_truth - 1)):.1f} %"
        print(f"| {name} | {weighting} | {len(calibration)} | {100 * overall['within_5pct']:.1f} % | "
              f"{100 * overall['within_10pct']:.1f} % | {overall['mape_pct']:.2f} % | {fifths} | {sparsest} | {edge_text} | {worst} |")

"""The speed exponent's ablation: each validation scored with the calibration fitted with and without it.

For every resolution's validation run, its calibration model is fitted twice on the same calibration children
(``calibrate --speed-correction``, the default, and ``--no-speed-correction``) and scored on the same 10,000
validation children: their paired measurements (ratio × anchor) as timed, brought to the table's speed with the
fitted exponent or not. Runs timed before the exponent existed have their paired measurement as ``measured_ms``.
Also the median error by fifth of the reference's latency beside each child (how fast the machine ran), with and
without the exponent: what it corrects. The README's speed-exponent table comes from here.

Usage (repository root): python docs/results/speed-exponent/ablation.py > docs/results/speed-exponent/ablation.md

Fitted without kind repeats (``repeats=False``), as these tables were: their calibration children hold none of
the few-kind children that term needs (``docs/results/validation-noise/few-kinds/``).
"""
from pathlib import Path

import numpy as np
import pandas as pd

from instanas.space import parse_architecture
from lut.agreement import agreement
from lut.store import load_table
from lut.table import fit_calibration

RESULTS = Path("docs/results")
VALIDATIONS = [  # (machine, gated, folder, the plain table calibrated there, the model: entries wants 1,000 children)
    ("AMD EPYC (fe6bbd7d4531)", "no", "correlate-32", "res32-v1.json", "cells"),
    ("AMD EPYC (fe6bbd7d4531)", "yes", "correlate-64", "res64-v1.json", "entries"),
    ("AMD EPYC (fe6bbd7d4531)", "yes", "correlate-224", "res224-v2.json", "entries"),
    ("AMD EPYC (fe6bbd7d4531)", "no", "ungated/correlate-64", "res64-v1.json", "cells"),
    ("AMD EPYC (fe6bbd7d4531)", "no", "ungated/correlate-224", "res224-v2.json", "cells"),
    ("Intel Xeon (0c50a7011ece)", "10 min", "xeon/correlate-32", "res32-v1.json", "entries"),
    ("Intel Xeon (0c50a7011ece)", "10 min", "xeon/correlate-64", "res64-v1.json", "entries"),
    ("Intel Xeon (0c50a7011ece)", "no", "xeon/correlate-224", "res224-v1.json", "entries"),
]


def children(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Architectures, paired measurements (ratio × anchor) and the reference's latency beside each."""
    frame = pd.read_csv(path)
    paired = frame["paired_ms"] if "paired_ms" in frame else frame["measured_ms"]
    return (np.stack([parse_architecture(text) for text in frame["arch"]]), paired.to_numpy(),
            frame["reference_ms"].to_numpy())


print("| machine | gated | resolution | children | model | speed exponent | Pearson | MAPE | within ±5 % | within ±10 % | median error | "
      "median error by fifth of the reference's latency, fastest to slowest |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for machine, gated, folder, profile, model in VALIDATIONS:
    folder = RESULTS / folder
    if not (folder / "results.csv").exists():
        continue
    table = load_table(folder / profile)
    calibration = children(folder / "calibration" / "results.csv")
    archs, paired, reference = children(folder / "results.csv")
    fifths = pd.qcut(reference, 5, labels=False)
    for corrected in (False, True):
        fit = fit_calibration(table, *calibration[:2], model=model, reference_ms=calibration[2] if corrected else None,
                              repeats=False)
        table.meta["calibration"] = fit
        measured = table.measured_ms(paired / table.anchor_ms, reference)
        estimate = table.estimate(archs, mode="calibrated")
        scores = agreement(estimate, measured)
        error = estimate / measured - 1
        by_fifth = " / ".join(f"{100 * np.median(error[fifths == k]):+.1f}" for k in range(5))
        exponent = f"{fit['speed_exponent']:.3f}" if corrected else "none"
        print(f"| {machine} | {gated} | {table.resolution} px | {len(paired)} | {model} ({len(calibration[1])}) | {exponent} | {scores['pearson']:.4f} | {scores['mape_pct']:.2f} % | "
              f"{100 * scores['within_5pct']:.2f} % | {100 * scores['within_10pct']:.2f} % | "
              f"{100 * np.median(error):+.2f} % | {by_fifth} |")

"""The calibration models side by side: each fitted on a resolution's calibration children (``calibration/``: 300 at
32 px, 1,000 where the folder was calibrated with the ``entries`` default), scored on its 10,000 validation children
(the same measurements; only the fit differs). The README's calibration table comes from here.

Usage (repository root): python docs/results/calibration_models.py

Fitted without kind repeats (``repeats=False``), as these tables were: their calibration children hold none of
the few-kind children that term needs (``docs/results/validation-noise/few-kinds/``).
"""
import numpy as np
import pandas as pd

from instanas.space import parse_architecture
from lut.agreement import agreement
from lut.store import load_table
from lut.table import CALIBRATION_MODELS, fit_calibration

RESULTS = "docs/results"
PROFILES = {32: "res32-v1.json", 64: "res64-v1.json", 224: "res224-v2.json"}  # the plain tables calibrated


def children(path: str) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(path)
    return np.stack([parse_architecture(text) for text in frame["arch"]]), frame["measured_ms"].to_numpy()


print("| resolution | model | calibration children | Pearson | validation MAPE | within ±5 % | within ±10 % | worst error |")
print("|---|---|---|---|---|---|---|---|")
for resolution, profile in PROFILES.items():
    folder = f"{RESULTS}/correlate-{resolution}"
    try:
        validation = children(f"{folder}/results.csv")
    except FileNotFoundError:
        continue
    table = load_table(f"{folder}/{profile}")
    calibration = children(f"{folder}/calibration/results.csv")
    for model in ("plain", *CALIBRATION_MODELS):
        if model != "plain":
            table.meta["calibration"] = fit_calibration(table, *calibration, model=model, repeats=False)
        estimate = table.estimate(validation[0], mode="plain" if model == "plain" else "calibrated")
        scores = agreement(estimate, validation[1])
        worst = np.abs(estimate / validation[1] - 1).max()
        print(f"| {resolution} px | {model} | {len(calibration[1])} | {scores['pearson']:.4f} | {scores['mape_pct']:.2f} % | {100 * scores['within_5pct']:.2f} % | "
              f"{100 * scores['within_10pct']:.2f} % | {100 * worst:.1f} % |")

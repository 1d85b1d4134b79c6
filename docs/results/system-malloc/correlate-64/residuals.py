"""Where the calibrated estimates miss: the figures the README quotes under "Measured figures".

Usage (repository root): python docs/results/system-malloc/correlate-64/residuals.py
"""
import numpy as np
import pandas as pd

from instanas.space import parse_architecture
from lut.store import load_table

RESULTS = "docs/results/system-malloc"


def frame(path: str, lut: str) -> tuple[pd.DataFrame, np.ndarray]:
    results = pd.read_csv(path)
    archs = np.stack([parse_architecture(text) for text in results["arch"]])
    table = load_table(lut)
    results["measured_over_estimate"] = results["measured_ms"] / table.estimate(archs, mode="calibrated")
    results["relative_iqr"] = results["ratio_iqr"] / (results["measured_ms"] / table.anchor_ms)
    return results, archs


# 32 px: the share beyond ±5 % by fifth of modules executed and of ratio spread
results, archs = frame(f"{RESULTS}/correlate-32/results.csv", f"{RESULTS}/correlate-32/res32-v6.json")
beyond = (results["measured_over_estimate"] ** -1 - 1).abs() > 0.05
print(f"32 px: beyond ±5 %: {beyond.mean():.3f}")
for name, values in (("modules", archs.sum(axis=(1, 2))), ("ratio IQR", results["relative_iqr"])):
    for bucket, share in beyond.groupby(pd.qcut(values, 5)).mean().items():
        print(f"  {name} {bucket}: {share:.3f} beyond ±5 %")

# 64 px: measured / calibrated estimate by the number of expansion-6 modules in cell 0, calibration vs validation
for name in ("calibration/results.csv", "results.csv"):
    results, archs = frame(f"{RESULTS}/correlate-64/{name}", f"{RESULTS}/correlate-64/res64-v2.json")
    expansion6 = archs[:, 0, 0].astype(int) + archs[:, 0, 2]
    medians = results.groupby(expansion6)["measured_over_estimate"].median().round(3).to_dict()
    print(f"64 px {name}: measured / estimate by cell-0 expansion-6 modules {medians}")

# the ratio spread of the calibration children at each resolution
for resolution, lut in ((32, "correlate-32/res32-v6.json"), (64, "correlate-64/res64-v2.json"),
                        (224, "correlate-224/res224-v3.json")):
    results, _ = frame(f"{RESULTS}/correlate-{resolution}/calibration/results.csv", f"{RESULTS}/{lut}")
    print(f"{resolution} px calibration children: median ratio IQR {results['relative_iqr'].median():.3f} of the ratio")

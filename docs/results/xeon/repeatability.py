"""How far this machine lets a validation go: the same children timed in separate runs, and what the speed exponent
does across the machine's speeds.

1. Each run of the same 200 children (``repeatability/R-<run>/``, ``instanas correlate -r R -n 200 --seed 11
   --wait-for-speed 0 [--min-runs K]``, one process each, one after the other; ``224-fixedlayout-N`` under
   ``setarch x86_64 -R env PYTHONHASHSEED=0``, the address-space layout fixed, alternating with ``224-aslr-N``):
   its median error and agreement, and, for each pair of twin runs (A and B), how far the whole run moved (median of the log ratio of the two measurements of each
   child) and how far single children moved beyond that (the log ratio's IQR / 1.349, a standard deviation; one
   measurement's own noise is that / √2). A child's error that repeats from run to run is the model's; one that does
   not is the timing's.
2. The 224 px validation (``correlate-224/``, 10,000 children, ungated, in two sessions: the first 940 while the
   reference ran at 7–9 ms, the rest while the machine ran about 40 % slower): the median error by the
   reference's latency beside the child, of the paired measurement (ratio × anchor) and of the measurement brought
   to the table's speed with its speed exponent.

Usage (repository root): python docs/results/xeon/repeatability.py > docs/results/xeon/repeatability.md
"""
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path("docs/results/xeon")


def error(frame: pd.DataFrame, column: str = "measured_ms") -> pd.Series:
    return frame["estimate_ms"] / frame[column] - 1


runs = {path.name: pd.read_csv(path / "results.csv").set_index("index").sort_index()
        for path in sorted((HERE / "repeatability").glob("*-*"))}
print("| run | min runs | reference ms (median) | s / child | median error | within ±5 % | within ±10 % | "
      "within ±5 % of its own median |")
print("|---|---|---|---|---|---|---|---|")
for name, frame in runs.items():
    settings = pd.read_json(HERE / "repeatability" / name / "run.json", typ="series")
    e = error(frame)
    print(f"| {name} | {settings['min_runs']} | {frame['reference_ms'].median():.2f} | {frame['wall_s'].mean():.3f} | "
          f"{100 * e.median():+.2f} % | {100 * (e.abs() <= 0.05).mean():.1f} % | {100 * (e.abs() <= 0.10).mean():.1f} % | "
          f"{100 * ((e - e.median()).abs() <= 0.05).mean():.1f} % |")

print("\n| runs compared | the whole run moved | single children moved (σ of the log ratio) | one measurement's σ | "
      "correlation of the two runs' errors |")
print("|---|---|---|---|---|")
twins = [(a, b) for a, b in combinations(runs, 2) if a.replace("-A", "-") == b.replace("-B", "-") != a]
for a, b in twins:
    log_ratio = np.log(runs[b]["measured_ms"] / runs[a]["measured_ms"])
    sigma = (log_ratio.quantile(0.75) - log_ratio.quantile(0.25)) / 1.349
    correlation = np.corrcoef(error(runs[a]), error(runs[b]))[0, 1]
    print(f"| {a} / {b} | {100 * log_ratio.median():+.2f} % | {100 * sigma:.2f} % | {100 * sigma / np.sqrt(2):.2f} % | "
          f"{correlation:.2f} |")

validation = HERE / "correlate-224" / "results.csv"
if validation.exists():
    frame = pd.read_csv(validation)
    bins = pd.cut(frame["reference_ms"], [0, 7.5, 8.1, 8.8, 10, 11, 12, 13, np.inf])
    grouped = pd.DataFrame({"bin": bins, "paired": error(frame, "paired_ms"), "corrected": error(frame)})
    table = grouped.groupby("bin", observed=True).agg(children=("paired", "size"), paired=("paired", "median"),
                                                       corrected=("corrected", "median"))
    print(f"\n224 px, {len(frame)} children of the validation: median error by the reference's latency "
          "beside the child (ms)\n")
    print("| reference ms | children | paired (ratio × anchor) | brought to the table's speed |")
    print("|---|---|---|---|")
    for interval, row in table.iterrows():
        print(f"| {interval} | {int(row['children'])} | {100 * row['paired']:+.2f} % | {100 * row['corrected']:+.2f} % |")
    for column in ("paired", "corrected"):
        e = grouped[column]
        print(f"\n{column}: within ±5 % {100 * (e.abs() <= 0.05).mean():.1f} %, within ±10 % "
              f"{100 * (e.abs() <= 0.10).mean():.1f} %, median {100 * e.median():+.2f} %", end="")
    print()

passes = HERE / "passes-64" / "results.csv"
if passes.exists():
    twice = pd.read_csv(passes)
    once = pd.read_csv(HERE / "correlate-64" / "results.csv").set_index("arch").loc[twice["arch"]]
    print(f"\n64 px, the same {len(twice)} children (the first of the 10,000 validation, `--archs`) timed once and "
          "with `--passes 2`\n")
    print("| timing | median error | within ±5 % | within ±10 % | within ±5 % of its own median | MAPE | s / child |")
    print("|---|---|---|---|---|---|---|")
    for label, frame in (("once (the 10,000 validation)", once), ("--passes 2", twice)):
        e = error(frame.reset_index(drop=True))
        print(f"| {label} | {100 * e.median():+.2f} % | {100 * (e.abs() <= 0.05).mean():.1f} % | "
              f"{100 * (e.abs() <= 0.10).mean():.2f} % | {100 * ((e - e.median()).abs() <= 0.05).mean():.1f} % | "
              f"{100 * e.abs().mean():.2f} % | {frame['wall_s'].mean():.3f} |")

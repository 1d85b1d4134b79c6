"""Issue 33's targets for InstaNAS on cluttered digits, read from a ``compare`` table: each with its figure and
whether it is met.

    python docs/results/compare-cluttered/targets.py docs/results/compare-cluttered > docs/results/compare-cluttered/targets.md
"""

import sys
from pathlib import Path

import pandas as pd


def targets(table: pd.DataFrame, buckets: pd.DataFrame) -> list[tuple[str, str, bool]]:
    reference = table[(table["method"] == "mobilenetv2") & (table["point"] == "1.0×")].iloc[0]
    rows = [("MobileNetV2 1.0× ≥ 90 % on validation", f"{100 * reference['accuracy']:.1f} %",
             reference["accuracy"] >= 0.90)]
    for smallest in table[table["method"] == "smallest"].itertuples():  # runs before the method existed have none
        gap = 100 * (reference["accuracy"] - smallest.accuracy)
        rows.append(("the smallest architecture ≥ 5 points below MobileNetV2 1.0×",
                     f"{100 * smallest.accuracy:.1f} % ({gap:+.1f} points below)", gap >= 5))
    instanas = table[table["method"] == "instanas"]
    for point in instanas.itertuples():
        name = f"InstaNAS {point.point}"
        mine = buckets[(buckets["method"] == "instanas") & (buckets["point"] == point.point)]
        rising = mine["lut_ms_mean"].is_monotonic_increasing and mine["lut_ms_mean"].iloc[-1] > mine["lut_ms_mean"].iloc[0]
        accurate = point.accuracy >= reference["accuracy"] - 0.005
        cheap = point.lut_ms_mean <= 0.7 * reference["lut_ms_mean"]
        rows += [
            (f"{name}: ≥ 5 distinct architectures", str(point.distinct_architectures), point.distinct_architectures >= 5),
            (f"{name}: Spearman of latency with clutter ≥ +0.2", f"{point.spearman_latency_vs_clutter:+.3f}",
             point.spearman_latency_vs_clutter >= 0.2),
            (f"{name}: mean LUT latency rising from the light to the heavy bucket",
             " → ".join(f"{value:.2f}" for value in mine["lut_ms_mean"]) + " ms", bool(rising)),
            (f"{name}: ≥ MobileNetV2 1.0×'s accuracy − 0.5 points at ≤ 0.7× its latency (controller included)",
             f"{100 * point.accuracy:.1f} % vs {100 * reference['accuracy'] - 0.5:.1f} %; {point.lut_ms_mean:.2f} ms "
             f"vs {0.7 * reference['lut_ms_mean']:.2f} ms (LUT)", bool(accurate and cheap)),
        ]
    return rows


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    rows = targets(pd.read_csv(folder / "table.csv"), pd.read_csv(folder / "buckets.csv"))
    print("| target (issue 33) | figure | met |\n|---|---|---|")
    for name, figure, met in rows:
        print(f"| {name} | {figure} | {'yes' if met else '**no**'} |")

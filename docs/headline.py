"""The README's headline figures, computed from the committed reports (``tests/test_docs.py`` checks that the README
shows exactly this block, so a figure changes when its report does, and only then).

    python docs/headline.py
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"


def lut_rows() -> list[str]:
    rows = ["| resolution | children | Pearson | MAPE | within ±5 % | within ±10 % | s / child |",
            "|---|---|---|---|---|---|---|"]
    for resolution in (32, 64, 224):
        report = json.loads((RESULTS / f"correlate-{resolution}" / "report.json").read_text())
        rows.append(f"| {resolution} px | {report['n']:,} | {report['pearson']:.4f} | {report['mape_pct']:.2f} % | "
                    f"{100 * report['within_5pct']:.1f} % | {100 * report['within_10pct']:.2f} % | "
                    f"{report['wall_s_per_child']:.3f} |")
    return rows


def comparison_rows() -> list[str]:
    table = pd.read_csv(RESULTS / "compare-digits" / "table.csv")
    chosen = table[table["method"].isin(["mobilenetv2", "oneshot-retrained", "blockdrop", "convnet-aig", "instanas"])]
    rows = ["| method | point | accuracy | latency, measured (ms) |", "|---|---|---|---|"]
    for item in chosen.itertuples():
        rows.append(f"| {item.method} | {item.point} | {100 * item.accuracy:.2f} % | {item.measured_ms_mean:.2f} |")
    return rows


def headline() -> str:
    return "\n".join([
        "LUT (calibrated) against measurement, 10,000 random children per resolution "
        "([docs/results/correlate-R/](docs/results/)):",
        "",
        *lut_rows(),
        "",
        "Digits, 32 px, every method trained by the committed code at one budget "
        "([docs/results/compare-digits/](docs/results/compare-digits/)):",
        "",
        *comparison_rows(),
    ])


if __name__ == "__main__":
    print(headline())

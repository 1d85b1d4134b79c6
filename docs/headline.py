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


NOISE = RESULTS / "validation-noise"
# the default pipeline's validations (profile, calibrate with the few-kind children, correlate; the runtimes one child
# per reference block), each timed with a tenth of its children twice; the earlier states' are in NOISE's README
DEFAULT_PIPELINE = (
    ("32 px, eager", NOISE / "few-kinds" / "correlate-32"),
    ("32 px, eager, the same table hours later", NOISE / "stale-table" / "correlate-32-eager-later"),
    ("64 px, eager", NOISE / "measured-defaults" / "correlate-64"),
    ("224 px, eager", NOISE / "measured-defaults" / "correlate-224"),
    ("32 px, openvino", NOISE / "runtimes" / "correlate-32-openvino"),
    ("32 px, openvino, calibrated again hours later", NOISE / "stale-table" / "correlate-32-openvino-v3"),
    ("32 px, onnxruntime", NOISE / "runtimes" / "correlate-32-onnxruntime"),
    ("32 px, onnxruntime, the same table hours later", NOISE / "stale-table" / "correlate-32-onnxruntime-v2-later"),
    ("32 px, onnxruntime, calibrated again", NOISE / "stale-table" / "correlate-32-onnxruntime-v3"),
)


def noise_rows() -> list[str]:
    """The validations that time a tenth of their children twice: the LUT against one measurement beside a second
    measurement against the first, and the LUT's error with the measurement's noise taken out."""
    rows = ["| run | children (timed twice) | on those: LUT vs 1st within ±5 % | 2nd vs 1st within ±5 % | "
            "one measurement's noise | LUT error, noise taken out (95 %) | of which bias | s / child |",
            "|---|---|---|---|---|---|---|---|"]
    for name, folder in DEFAULT_PIPELINE:
        report = json.loads((folder / "report.json").read_text())
        repeat = report["repeat"]
        low, high = repeat["corrected_rms_interval_pct"]
        rows.append(f"| {name} | {report['n']:,} ({repeat['pairs']:,}) | "
                    f"{100 * repeat['lut_same_children']['within_5pct']:.1f} % | "
                    f"{100 * repeat['repeat']['within_5pct']:.1f} % | {repeat['noise_pct']:.2f} % | "
                    f"{repeat['corrected_rms_pct']:.2f} % ({low:.2f}–{high:.2f} %) | {repeat['lut_bias_pct']:+.2f} % | "
                    f"{report['wall_s_per_child']:.3f} |")
    return rows


def comparison_rows(folder: str) -> list[str]:
    """The re-trained points of a comparison; on cluttered data also how an image's latency follows its clutter."""
    table = pd.read_csv(RESULTS / folder / "table.csv")
    chosen = table[table["method"].isin(["mobilenetv2", "smallest", "shufflenet_v2", "resnet", "oneshot-retrained",
                                         "blockdrop", "convnet-aig", "instanas"])]
    clutter = "spearman_latency_vs_clutter" in chosen and chosen["spearman_latency_vs_clutter"].notna().any()
    rows = ["| method | point | accuracy | latency, measured (ms) |" + (" Spearman latency vs clutter |" if clutter else ""),
            "|---|---|---|---|" + ("---|" if clutter else "")]
    for item in chosen.itertuples():
        row = f"| {item.method} | {item.point} | {100 * item.accuracy:.2f} % | {item.measured_ms_mean:.2f} |"
        if clutter:
            spearman = item.spearman_latency_vs_clutter
            row += " — |" if pd.isna(spearman) else f" {spearman:+.2f} |"
        rows.append(row)
    return rows


def headline() -> str:
    return "\n".join([
        "LUT (calibrated) against measurement, 10,000 random children per resolution "
        "([docs/results/correlate-R/](docs/results/)):",
        "",
        *lut_rows(),
        "",
        "The LUT against the machine's own noise, Intel machine, the default pipeline: a tenth of the children timed "
        "a second time half a run later, so the LUT's misses can be told from the machine's; a calibrated table "
        "holds for the machine's state it was calibrated in ([docs/results/validation-noise/]"
        "(docs/results/validation-noise/): earlier states, and each run below):",
        "",
        *noise_rows(),
        "",
        "Digits, 32 px, every method trained by the committed code at one budget "
        "([docs/results/compare-digits/](docs/results/compare-digits/)):",
        "",
        *comparison_rows("compare-digits"),
        *(["",
           "Cluttered MNIST, 32 px, images that differ in difficulty, every method at one budget, one `make -j2` "
           "from scratch (every re-training 15 epochs at batch 64; per-stage wall times in its README) "
           "([docs/results/compare-cluttered/](docs/results/compare-cluttered/)):",
           "",
           *comparison_rows("compare-cluttered")] if (RESULTS / "compare-cluttered" / "table.csv").exists() else []),
    ])


if __name__ == "__main__":
    print(headline())

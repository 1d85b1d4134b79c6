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


def noise_rows() -> list[str]:
    """The validations that time a tenth of their children twice: the LUT against one measurement beside a second
    measurement against the first, and the LUT's error with the measurement's noise taken out."""
    rows = ["| run, machine state | children (timed twice) | on those: LUT vs 1st within ±5 % | 2nd vs 1st within ±5 % | "
            "one measurement's noise | LUT error, noise taken out (95 %) | of which bias | s / child |",
            "|---|---|---|---|---|---|---|---|"]
    states = (("unsteady", RESULTS / "validation-noise"), ("quiet", RESULTS / "validation-noise" / "quiet-state"),
              ("quiet, few-kind calibration", RESULTS / "validation-noise" / "few-kinds"),
              ("default calibration, same day", RESULTS / "validation-noise" / "measured-defaults"),
              ("one child per reference block", RESULTS / "validation-noise" / "runtimes"))
    folders = [(state, folder) for state, root in states
               for folder in sorted(root.glob("correlate-*"), key=lambda p: (len(p.name), p.name))]
    for state, folder in folders:
        report = json.loads((folder / "report.json").read_text())
        repeat = report["repeat"]
        low, high = repeat["corrected_rms_interval_pct"]
        resolution, _, backend = folder.name.removeprefix("correlate-").partition("-")
        rescored = " (rescored)" if "rescored_from" in json.loads((folder / "run.json").read_text()) else ""
        rows.append(f"| {resolution} px, {backend or 'eager'}, {state}{rescored} | {report['n']:,} ({repeat['pairs']:,}) | "
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
        *(["On the Intel machine, a tenth of the children timed a second time half a run later, so the LUT's misses "
           "can be told from the machine's, in an unsteady state and a quiet one, and with the default calibration "
           "since the few-kind children (rescored: the quiet state's measurements scored by `instanas rescore`; "
           "measured: profiled, calibrated and validated the same day), and the runtimes timed one child per "
           "reference block, their default since 9ddf5fb "
           "([docs/results/validation-noise/](docs/results/validation-noise/), "
           "[quiet-state/](docs/results/validation-noise/quiet-state/), "
           "[few-kinds/](docs/results/validation-noise/few-kinds/), "
           "[measured-defaults/](docs/results/validation-noise/measured-defaults/), "
           "[runtimes/](docs/results/validation-noise/runtimes/)):",
           "",
           *noise_rows(),
           ""] if list((RESULTS / "validation-noise").glob("correlate-*/report.json")) else []),
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

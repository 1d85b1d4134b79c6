"""Issue 34: what the few-kind calibration children and the kind-repeat term each do, at 32, 64 and 224 px.

Each resolution's calibration children (``calibrate-<R>/``: 1,000, a tenth of them from one or two module kinds,
labelled ``kinds …``) are fitted four ways — the random children only or all of them, with and without the
kind-repeat term — by the code `instanas calibrate` runs (``calibration_from_results``, the ``entries`` model, the
speed exponent), and every fit is scored by ``lut.report.rescore`` (`instanas rescore`) on measurements already
taken: the 10,000 children of ``../quiet-state/correlate-<R>/`` and the edges (``edges-<R>/``). The last row of each
resolution is the default (`calibrate --few-kinds 0.1 --kind-repeats`).

    python docs/results/validation-noise/few-kinds/ablation.py > docs/results/validation-noise/few-kinds/ablation.md
"""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from lut.agreement import first_passes
from lut.report import rescore
from lut.store import load_table, save_calibrated
from lut.validation import calibration_from_results

HERE = Path(__file__).parent
QUIET = HERE.parent / "quiet-state"
EDGE_LIMIT = 0.07


def fitted_table(table, rows: pd.DataFrame, repeats: bool, store: Path):
    """``table`` calibrated on ``rows`` of a calibration run, as `instanas calibrate` fits it."""
    rows.to_csv(store.parent / "children.csv", index=False)
    fit = calibration_from_results(table, store.parent / "children.csv", "entries", True, "absolute", repeats)
    return save_calibrated(table, fit, store)


def scores(resolution: int, repeats: bool, few_kinds: bool) -> list[str]:
    table = load_table(QUIET / f"res{resolution}-v1.json")
    rows = pd.read_csv(HERE / f"calibrate-{resolution}" / "results.csv")
    few = rows["label"].fillna("").str.startswith("kinds ")
    chosen = rows if few_kinds else rows[~few]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "store").mkdir()
        calibrated = fitted_table(table, chosen, repeats, scratch / "store")
        report = rescore(QUIET / f"correlate-{resolution}", calibrated, scratch / "validation", "calibrated")
        edges = HERE / f"edges-{resolution}"
        edge_rows = None
        if edges.exists():
            rescore(edges, calibrated, scratch / "edges", "calibrated")
            edge_rows = first_passes(pd.read_csv(scratch / "edges" / "results.csv"))
    low, high = report["repeat"]["corrected_rms_interval_pct"]
    worst_fifth = min(part["within_10pct"] for part in report["by_module_count"])
    cells = [f"{resolution} px", "random + a tenth of few-kind" if few_kinds else "random only",
             str(len(first_passes(chosen))), "yes" if repeats else "no", f"{100 * report['within_5pct']:.1f} %",
             f"{report['repeat']['corrected_rms_pct']:.2f} % ({low:.2f}–{high:.2f})", f"{100 * worst_fifth:.1f} %"]
    if edge_rows is None:
        return [*cells, "—", "—"]
    error = edge_rows["estimate_ms"] / edge_rows["measured_ms"] - 1
    worst = int(np.argmax(np.abs(error.to_numpy())))
    within = int((np.abs(error) <= EDGE_LIMIT).sum())
    return [*cells, f"{within} of {len(error)}", f"{edge_rows['label'].iloc[worst]} {100 * error.iloc[worst]:+.1f} %"]


def main() -> None:
    print("| resolution | calibration children | n | kind repeats | LUT ±5 % (10,000) | noise-corrected error (95 %) "
          "| worst fifth ±10 % | edges within ±7 % | worst edge |")
    print("|---|---|---|---|---|---|---|---|---|")
    for resolution in (32, 64, 224):
        if not (HERE / f"calibrate-{resolution}").exists():
            continue
        for few_kinds, repeats in ((False, False), (False, True), (True, False), (True, True)):
            print("| " + " | ".join(scores(resolution, repeats, few_kinds)) + " |")


if __name__ == "__main__":
    main()

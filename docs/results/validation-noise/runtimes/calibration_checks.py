"""Is the runtimes' remaining error the calibration's? Each backend's calibration children (``calibrate-32-B/``) are
fitted again by the code `instanas calibrate` runs — with each calibration model, with and without the kind-repeat
term, and on a random half or three quarters of the children (two draws each) — and every fit is scored by
``lut.report.rescore`` (`instanas rescore`) on the validation's measurements (``correlate-32-B/``); no timing.

    python docs/results/validation-noise/runtimes/calibration_checks.py > docs/results/validation-noise/runtimes/calibration-checks.md
"""

import tempfile
from pathlib import Path

import pandas as pd

from lut.report import rescore
from lut.store import load_table, save_calibrated
from lut.validation import calibration_from_results

HERE = Path(__file__).parent
FITS = [("entries", True, None, 0), ("entries", False, None, 0), ("cells", True, None, 0), ("stages", True, None, 0),
        ("linear", False, None, 0), ("entries", True, 500, 0), ("entries", True, 500, 1), ("entries", True, 750, 0),
        ("entries", True, 750, 1)]


def score(backend: str, model: str, repeats: bool, children: int | None, draw: int) -> str:
    table = load_table(HERE / backend / "res32-v1.json")
    rows = pd.read_csv(HERE / f"calibrate-32-{backend}" / "results.csv")
    if children:
        rows = rows[rows["index"].isin(pd.Series(rows["index"].unique()).sample(children, random_state=draw))]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "store").mkdir()
        rows.to_csv(scratch / "children.csv", index=False)
        fit = calibration_from_results(table, scratch / "children.csv", model, True, "absolute", repeats)
        report = rescore(HERE / f"correlate-32-{backend}", save_calibrated(table, fit, scratch / "store"),
                         scratch / "validation", "calibrated")
    low, high = report["repeat"]["corrected_rms_interval_pct"]
    return (f"| {backend} | {model} | {'yes' if repeats else 'no'} | {children or 'all'}"
            f"{f' (draw {draw})' if children else ''} | {100 * report['within_5pct']:.1f} % | {report['mape_pct']:.2f} % "
            f"| {report['repeat']['corrected_rms_pct']:.2f} % ({low:.2f}–{high:.2f}) |")


def main() -> None:
    print("| backend | model | kind repeats | calibration children | LUT ±5 % (2,000) | MAPE | noise-corrected error (95 %) |")
    print("|---|---|---|---|---|---|---|")
    for backend in ("onnxruntime", "openvino"):
        for fit in FITS:
            print(score(backend, *fit), flush=True)


if __name__ == "__main__":
    main()

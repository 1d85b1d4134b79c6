"""How much of the LUT's noise-corrected error is the machine's speed state, read from each validation's rows.

The LUT's log error ``e = log(estimate / measured)`` of every first measurement is fitted on the reference network's
speed beside it, ``s = log(reference_ms / the table's reference)``: ``e ≈ offset + slope · s``. The offset is what the
estimates miss at the table's own speed (a process's or a machine state's shift); the slope what the calibration's
speed exponent did not carry (0 when it carried it all). Then, on the children timed twice, the error with one
measurement's noise taken out (``sqrt(mean r² − mean d²/2)``, ``d = log(second / first)``) for three residuals ``r``:
``e`` itself, ``e`` less its mean, and ``e`` less the fitted line — what a table would miss if the run's offset and
speed dependence were known. One fit of two numbers on thousands of children: no room to overfit the shape.
The residuals are every child's, as in the reports (``lut/agreement.py``); the noise is the twice-timed children's.

    python docs/results/validation-noise/speed.py docs/results/validation-noise > docs/results/validation-noise/speed.md
"""

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def corrected(residual: np.ndarray, noise: float) -> float:
    """RMS of ``residual`` with the measurement's noise (variance ``noise``) taken out, in %."""
    return 100 * float(np.sqrt(max(np.mean(residual**2) - noise, 0.0)))


def decompose(folder: Path) -> dict:
    report = json.loads((folder / "report.json").read_text())
    rows = pd.read_csv(folder / "results.csv")
    first, second = rows[rows["repeat"] == 0].set_index("index"), rows[rows["repeat"] == 1].set_index("index")
    table_speed = report["reference_ms"]["at_table_speed"]

    def error_and_speed(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        return (np.log(frame["estimate_ms"] / frame["measured_ms"]).to_numpy(),
                np.log(frame["reference_ms"] / table_speed).to_numpy())

    error, speed = error_and_speed(first)
    design = np.column_stack([np.ones_like(speed), speed])
    (offset, slope), *_ = np.linalg.lstsq(design, error, rcond=None)
    pairs = first.loc[second.index]
    noise = float(np.mean(np.log(second["measured_ms"] / pairs["measured_ms"]) ** 2) / 2)
    return {"run": folder.name, "children": len(first), "pairs": len(pairs),
            "speed p5–p95": np.percentile(np.exp(speed), [5, 95]),
            "offset": 100 * offset, "slope": slope,
            "as it is": corrected(error, noise),
            "offset out": corrected(error - error.mean(), noise),
            "offset and speed out": corrected(error - offset - slope * speed, noise)}


if __name__ == "__main__":
    root = Path(sys.argv[1])
    print("| run | children (timed twice) | reference / table's, p5–p95 | offset at the table's speed | slope on "
          "log speed | noise-corrected error: as it is | without the offset | without offset and speed |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in sorted(root.glob("correlate-*"), key=lambda path: (len(path.name), path.name)):
        row = decompose(folder)
        low, high = row["speed p5–p95"]
        print(f"| {row['run']} | {row['children']:,} ({row['pairs']:,}) | {low:.2f}–{high:.2f} | "
              f"{row['offset']:+.2f} % | {row['slope']:+.3f} | {row['as it is']:.2f} % | {row['offset out']:.2f} % | "
              f"**{row['offset and speed out']:.2f} %** |")

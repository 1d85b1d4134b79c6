"""Does timing children in groups change what is measured? Per backend, 16 dense (≥ 68 modules) and 8 sparse (≤ 25)
32 px children of the committed OpenVINO validation, each timed three times under four harnesses, the harnesses
interleaved: correlate's eager default (four children per reference block, one warm-up call), one child per block with
the same warm-up, two per block, and the profile's pairing (one per block, three warm-up calls, 7 blocks, 0.1 s) that
the runtimes now use by default.

    python docs/results/validation-noise/grouping/grouping.py openvino   # ~3 min per backend; nothing else running
    python docs/results/validation-noise/grouping/grouping.py --summary  # grouping.md from the rows-*.csv here
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
CHILDREN = HERE.parent / "quiet-state" / "correlate-32-openvino" / "results.csv"
BASELINE = "group1-profile"
HARNESSES = {"default": {}, "group1": {"group": 1}, "group2": {"group": 2},
             BASELINE: {"group": 1, "warmup_calls": 3, "min_runs": 7, "min_run_time": 0.1}}


def children() -> tuple[np.ndarray, np.ndarray]:
    """The architectures and whether each is dense."""
    from instanas.space import parse_architecture

    first = pd.read_csv(CHILDREN).query("repeat == 0")
    modules = first.arch.str.count("1")
    picked = pd.concat([first[modules >= 68].sample(16, random_state=1), first[modules <= 25].sample(8, random_state=1)])
    return np.stack([parse_architecture(text) for text in picked.arch]), np.arange(len(picked)) < 16


def measure(backend: str) -> None:
    from lut.validation import ChildTimer
    from profiler.harness import Harness

    archs, dense = children()
    timers = {name: ChildTimer(32, Harness(**settings), threads=2, merge="mean", backend=backend)
              for name, settings in HARNESSES.items()}
    rows = []
    for repetition in range(3):
        for name, timer in timers.items():
            for timing in timer.run(archs, list(range(len(archs)))):
                rows.append({"repetition": repetition, "harness": name, "child": timing.index,
                             "dense": bool(dense[timing.index]), "ratio": timing.stats.ratio,
                             "reference_ms": timing.stats.reference_ms, "runs": timing.stats.runs})
            print(backend, repetition, name, flush=True)
    pd.DataFrame(rows).to_csv(HERE / f"rows-{backend}.csv", index=False)


def summary() -> str:
    lines = ["# Grouped timing of exported children", "",
             "Made by `grouping.py` (see its docstring). *Level*: a child's median log ratio to the reference against "
             f"its median under `{BASELINE}`, in %, median over children; *spread*: RMS over children of the standard "
             "deviation of its three log ratios, in %.", "",
             "| backend | harness | level dense | level sparse | spread dense | spread sparse |", "|---|---|---|---|---|---|"]
    for path in sorted(HERE.glob("rows-*.csv")):
        rows = pd.read_csv(path)
        rows["log"] = 100 * np.log(rows.ratio)
        baseline = rows[rows.harness == BASELINE].groupby("child").log.median()
        rows["shift"] = rows.log - rows.child.map(baseline)
        for name in HARNESSES:
            mine = rows[rows.harness == name]
            children = [mine[mine.dense == dense].groupby("child") for dense in (True, False)]
            cells = ([f"{child['shift'].median().median():+.1f}" for child in children]
                     + [f"{np.sqrt((child.log.std() ** 2).mean()):.1f}" for child in children])
            lines.append(f"| {path.stem[5:]} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--summary"]:
        (HERE / "grouping.md").write_text(summary())
    else:
        measure(sys.argv[1])

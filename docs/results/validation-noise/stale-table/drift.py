"""The same 2,000 children timed twice, hours apart, per backend: how much each child, the reference network beside
it, and their ratio (what a paired table holds) moved, per module-count fifth. Prints Markdown:

    python docs/results/validation-noise/stale-table/drift.py > docs/results/validation-noise/stale-table/drift.md

Earlier: ``../runtimes/correlate-32-<backend>/``; later: ``correlate-32-<backend>-v3/`` here (seed 0 both: the same
children in the same order). Medians of later / earlier, first measurements only.
"""

from pathlib import Path

import pandas as pd

from lut.agreement import first_passes

HERE = Path(__file__).parent


def first_measurements(folder: Path) -> pd.DataFrame:
    return first_passes(pd.read_csv(folder / "results.csv")).set_index("index")


def drift_rows(backend: str) -> list[str]:
    earlier = first_measurements(HERE.parent / "runtimes" / f"correlate-32-{backend}")
    later = first_measurements(HERE / f"correlate-32-{backend}-v3")
    if not later["arch"].equals(earlier["arch"]):
        raise SystemExit(f"{backend}: the two runs timed other children")
    modules = earlier["arch"].str.count("1")
    moved = pd.DataFrame({
        "fifth": pd.qcut(modules, 5),
        "child": later["raw_ms"] / earlier["raw_ms"],
        "reference": later["reference_ms"] / earlier["reference_ms"],
        "ratio": later["paired_ms"] / earlier["paired_ms"],
    })
    rows = []
    for fifth, part in [*moved.groupby("fifth", observed=True), ("all", moved)]:
        name = "all" if fifth == "all" else f"{int(fifth.left) + 1}–{int(fifth.right)}"
        medians = part[["child", "reference", "ratio"]].median()
        rows.append(f"| {backend} | {name} | {len(part)} | {100 * (medians['child'] - 1):+.1f} % | "
                    f"{100 * (medians['reference'] - 1):+.1f} % | {100 * (medians['ratio'] - 1):+.1f} % |")
    return rows


def main() -> None:
    print("| backend | modules | children | child, later / earlier | reference beside it | their ratio |")
    print("|---|---|---|---|---|---|")
    for backend in ("onnxruntime", "openvino"):
        print("\n".join(drift_rows(backend)))


if __name__ == "__main__":
    main()

"""Compare a benchmark run with the committed baseline, normalised by the machine-speed probe.

    python bench/check.py CURRENT.json [--baseline FILE] [--max-slowdown 1.5] [--max-single 2.2]

For every benchmark in both runs: slowdown = (min now / min then) / (probe now / probe then), where the probe is
torchvision's MobileNetV2 timed beside that benchmark (for benchmarks marked ``host_bound``: JSON parsing and a
numpy product, see ``bench/conftest.py``), and ``min`` the fastest round (noise only ever adds time). A group
(pytest-benchmark's group: module forward at one resolution, child forward, LUT, …) fails when the geometric mean of
its slowdowns exceeds ``--max-slowdown``; a single benchmark fails past ``--max-single``. Between two runs of the
same code here, group means stayed within 1.22× and single benchmarks within 1.50×, so a 2× slowdown of a hot path
fails while the machine's noise does not. Exits 1 naming what regressed, 2 on unusable input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

BASELINE_DIR = Path(__file__).parent / "baseline"


def _fail(message: str):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _benchmarks(path: Path) -> dict[str, dict]:
    try:
        payload = json.loads(path.read_text())
        return {bench["fullname"]: bench for bench in payload["benchmarks"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        _fail(f"{path}: not a pytest-benchmark JSON file ({error.__class__.__name__})")


def _latest_baseline() -> Path:
    saved = sorted(BASELINE_DIR.glob("*/*.json"))
    if not saved:
        _fail(f"no baseline under {BASELINE_DIR}: run `make bench-baseline`")
    return saved[-1]


def slowdowns(current: dict[str, dict], baseline: dict[str, dict]) -> list[tuple[str, str, float, float, float]]:
    """(group, name, raw min ratio, probe ratio, normalised slowdown) for every benchmark in both runs, worst first."""
    rows = []
    for name in sorted(current.keys() & baseline.keys()):
        now, then = current[name], baseline[name]
        raw = now["stats"]["min"] / then["stats"]["min"]
        if now["extra_info"].get("probe") != then["extra_info"].get("probe"):
            _fail(f"{name}: timed beside another speed probe than the baseline's: run `make bench-baseline`")
        probe = now["extra_info"]["probe_ms"] / then["extra_info"]["probe_ms"]
        rows.append((then.get("group") or name, name, raw, probe, raw / probe))
    return sorted(rows, key=lambda row: row[4], reverse=True)


def group_means(rows) -> dict[str, tuple[float, str]]:
    """Geometric-mean slowdown of each group, and its worst benchmark."""
    groups: dict[str, list] = {}
    for group, name, _, _, slowdown in rows:
        groups.setdefault(group, []).append((slowdown, name))
    return {
        group: (math.exp(sum(math.log(value) for value, _ in members) / len(members)), max(members)[1])
        for group, members in groups.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("current", type=Path)
    parser.add_argument("--baseline", type=Path, default=None)
    parser.add_argument("--max-slowdown", type=float, default=1.5)
    parser.add_argument("--max-single", type=float, default=2.2)
    args = parser.parse_args()
    baseline_path = args.baseline or _latest_baseline()
    rows = slowdowns(_benchmarks(args.current), _benchmarks(baseline_path))
    if not rows:
        _fail(f"{args.current} and {baseline_path} share no benchmark")
    print(f"against {baseline_path} (slowdown = min ratio / machine-speed probe ratio)")
    print(f"{'benchmark':<58} {'min ×':>7} {'probe ×':>8} {'slowdown':>9}")
    for _, name, raw, probe, slowdown in rows:
        print(f"{name:<58} {raw:>7.2f} {probe:>8.2f} {slowdown:>9.2f}")
    failures = []
    for group, (mean, worst) in sorted(group_means(rows).items()):
        print(f"group {group!r}: geometric-mean slowdown {mean:.2f}")
        if mean > args.max_slowdown:
            failures.append(f"group {group!r} is {mean:.2f}× slower (limit {args.max_slowdown}×), worst: {worst}")
    for _, name, _, _, slowdown in rows:
        if slowdown > args.max_single:
            failures.append(f"{name} is {slowdown:.2f}× slower (limit {args.max_single}× for one benchmark)")
    for failure in failures:
        print(f"REGRESSION: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

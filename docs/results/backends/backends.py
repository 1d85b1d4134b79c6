"""Three children in every backend at 32, 64 and 224 px, each paired with the reference network run in the same
backend, all in one run: the MobileNetV2-like child (``mb3e6`` in every cell), the full meta-graph (all five modules
in every cell) and the smallest architecture (``basic`` in the seven required cells only).

    python docs/results/backends/backends.py --threads 2 --min-time 1 > docs/results/backends/table.md

A network's milliseconds are its paired ratio × the reference's raw median of the same measurement, so every row's
figure and its ratio to eager come from blocks timed seconds apart. Writes ``results.csv`` beside this file.
"""

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from instanas.space import format_architecture, full_architecture, mobilenetv2_architecture, smallest_architecture
from profiler.allocator import set_allocator
from profiler.backends import BACKENDS, backend_version, seeded_child
from profiler.fingerprint import fingerprint_id, machine_fingerprint
from profiler.reference import reference_timer

ARCHS = {"MobileNetV2-like": mobilenetv2_architecture(), "full meta-graph": full_architecture(),
         "smallest": smallest_architecture()}

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--min-time", type=float, default=1.0)
parser.add_argument("--resolutions", default="32,64,224")
options = parser.parse_args()
set_allocator("pinned")  # as the CLI times by default

rows = []
started = time.perf_counter()
for backend in BACKENDS:
    timer = reference_timer(options.threads, backend)
    for resolution in map(int, options.resolutions.split(",")):
        image = torch.randn(1, 3, resolution, resolution)
        for name, arch in ARCHS.items():
            stats = timer.measure(seeded_child(arch, resolution), image, min_run_time=options.min_time)
            rows.append({"backend": backend, "version": backend_version(backend), "resolution": resolution,
                         "network": name, "arch": format_architecture(arch), "ms": stats.ratio * stats.reference_ms,
                         "ratio": stats.ratio, "ratio_iqr": stats.ratio_iqr, "reference_ms": stats.reference_ms,
                         "raw_ms": stats.median_ms, "runs": stats.runs})
frame = pd.DataFrame(rows)
eager = frame[frame["backend"] == "eager"].set_index(["resolution", "network"])["ms"]
frame["vs_eager"] = [row.ms / eager[(row.resolution, row.network)] for row in frame.itertuples()]
frame.to_csv(Path(__file__).with_name("results.csv"), index=False)

fields = machine_fingerprint(options.threads)
print(f"Machine {fingerprint_id(fields)} ({fields['cpu_model']}, {options.threads} threads), torch "
      f"{fields['torch_version']}; " + ", ".join(f"{b} {backend_version(b)}" for b in BACKENDS[1:])
      + f"; {time.perf_counter() - started:.0f} s in all.\n")
print("| px | network | " + " | ".join(f"{backend} (ms)" for backend in BACKENDS) + " | "
      + " | ".join(f"{backend} / eager" for backend in BACKENDS[1:]) + " |")
print("|---" * (2 + 2 * len(BACKENDS) - 1) + "|")
for (resolution, network), group in frame.groupby(["resolution", "network"], sort=False):
    by = group.set_index("backend")
    print(f"| {resolution} | {network} | " + " | ".join(f"{by.loc[b, 'ms']:.2f}" for b in BACKENDS) + " | "
          + " | ".join(f"{by.loc[b, 'vs_eager']:.2f}×" for b in BACKENDS[1:]) + " |")
print("\nThe reference (the MobileNetV2-like child at 32 px) in each backend, median over the run: "
      + ", ".join(f"{b} {frame.loc[frame['backend'] == b, 'reference_ms'].median():.2f} ms" for b in BACKENDS) + ".")

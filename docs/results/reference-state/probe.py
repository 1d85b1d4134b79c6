"""Does a same-resolution reference cancel the machine's speed states better than the 32 px one?

For ``MINUTES`` minutes, eight random 224 px children are timed in rounds, each round against the 32 px reference
(the suite's) and against the MobileNetV2-like child at 224 px, with the suite's grouped harness. Per round it
records each child's two ratios and the 32 px reference's raw latency (the machine's speed). Writes
``probe.csv`` and prints, per child, the spread of each ratio over rounds and its correlation with the speed.

Usage (repository root, idle machine): python docs/results/reference-state/probe.py [MINUTES]
"""
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from instanas.metagraph import MetaGraph
from instanas.space import mobilenetv2_architecture, sample_architectures
from profiler.allocator import set_allocator
from profiler.reference import reference_timer
from profiler.timing import PairedTimer

set_allocator("pinned")
MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 5
RESOLUTION = 224
torch.manual_seed(0)
graph = MetaGraph(RESOLUTION).eval()
image = torch.randn(1, 3, RESOLUTION, RESOLUTION)
children = [(graph.child(arch), image) for arch in sample_architectures(8, keep=0.5, seed=7)]
timers = {"ref32": reference_timer(2), "ref224": PairedTimer(graph.child(mobilenetv2_architecture()), image, threads=2)}
rows, start, round_index = [], time.time(), 0
while time.time() - start < 60 * MINUTES:
    for name, timer in timers.items():
        for child, stats in enumerate(timer.measure_group(children)):
            rows.append({"round": round_index, "reference": name, "child": child, "ratio": stats.ratio,
                         "reference_ms": stats.reference_ms, "seconds": time.time() - start})
    round_index += 1
frame = pd.DataFrame(rows)
frame.to_csv(Path(__file__).with_name("probe.csv"), index=False)
speed = frame[frame.reference == "ref32"].groupby("round")["reference_ms"].first()
print(f"{round_index} rounds; 32 px reference {speed.min():.2f}–{speed.max():.2f} ms")
for name in timers:
    ratios = frame[frame.reference == name].pivot(index="round", columns="child", values="ratio")
    spread = (ratios.std() / ratios.mean()).median()
    correlation = np.median([np.corrcoef(ratios[c], speed)[0, 1] for c in ratios])
    print(f"{name}: ratio spread over rounds (median CV) {100 * spread:.2f} %, correlation with the machine's slowness "
          f"{correlation:+.2f}, ratio change per ms of 32 px reference "
          f"{100 * np.median([np.polyfit(speed, ratios[c] / ratios[c].mean(), 1)[0] for c in ratios]):+.2f} %")

"""What one child's measurement scatters by on this machine, and what does and does not reduce it (64 px).

The repeat runs of ``repeatability.py`` compare whole processes. Here every child is timed several times inside one
process, as ``correlate`` times it (``Harness()``'s settings, four children per reference round), in rounds that go
through its five measurements one after the other (about a second apart):

* ``A1``, ``A2``: the same meta-graph twice; ``B``: a second copy of the meta-graph (the same seeded weights at other
  addresses), between them. If the weights' placement in memory made a child's error, A1 and A2 would agree better
  than A1 and B.
* ``J1``, ``J2``: the same meta-graph with a heap allocation of random size (64 B–1 MiB) held during every timed
  block, so the activations land at other addresses from block to block. If their placement, fixed within one
  measurement, made the error, J1 and J2 would agree better than A1 and A2.

From the timed blocks of A1 and A2 it also compares statistics of the blocks (the median of the block ratios is what
the harness keeps), and it shows what averaging two or three measurements of a child does to the agreement with the
64 px table validated in ``correlate-64/`` (within ±5 %, and within ±5 % of the run's own median error, which
leaves out what moved the whole run). One measurement's σ is the σ of the log ratio of two measurements / √2.

Usage (repository root, an otherwise idle machine, about 5 minutes):
    python docs/results/xeon/noise.py > docs/results/xeon/noise.md
"""
import json
import time
from pathlib import Path

import numpy as np
import torch

from instanas.metagraph import MetaGraph
from instanas.space import correlation_sample
from lut.table import LatencyTable
from profiler import timing
from profiler.allocator import set_allocator
from profiler.harness import Harness
from profiler.reference import reference_timer

RESOLUTION, CHILDREN, GROUP = 64, 256, 4
TABLE = Path("docs/results/xeon/correlate-64/res64-v2.json")

set_allocator("pinned")
harness = Harness()
options = {"min_run_time": harness.min_run_time, "min_runs": harness.min_runs, "warmup_calls": harness.warmup_calls}
archs, _ = correlation_sample(CHILDREN, 0)
timer = reference_timer(2)
graphs = []
for _ in range(2):
    torch.manual_seed(0)
    graphs.append(MetaGraph(RESOLUTION).eval())
image = torch.randn(1, 3, RESOLUTION, RESOLUTION)

blocks: list[tuple[np.ndarray, np.ndarray]] = []  # per measured child: its block times and block ratios
keep_blocks = timing._paired_stats


def recording(times, ratios, reference_ms, calls):
    blocks.append((np.array(times), np.array(ratios)))
    return keep_blocks(times, ratios, reference_ms, calls)


timing._paired_stats = recording
plain_block = timing._Blocks.per_call
pad_rng = np.random.default_rng(1)
jitter = {"on": False}


def jittered_block(self):
    """A block with a heap allocation of random size held while it runs (the activations move)."""
    if not jitter["on"]:
        return plain_block(self)
    pad = torch.empty(int(pad_rng.integers(1, 16 * 1024)) * 64, dtype=torch.uint8)
    try:
        return plain_block(self)
    finally:
        del pad


timing._Blocks.per_call = jittered_block
runs = {name: [] for name in ("A1", "B", "A2", "J1", "J2")}
run_blocks = {name: [] for name in runs}
seconds = {name: 0.0 for name in runs}
for start in range(0, CHILDREN, GROUP):
    group = archs[start:start + GROUP]
    for name in runs:
        graph = graphs[1] if name == "B" else graphs[0]
        jitter["on"] = name.startswith("J")
        blocks.clear()
        began = time.perf_counter()
        stats = timer.measure_group([(graph.child(arch), image) for arch in group], **options)
        seconds[name] += time.perf_counter() - began
        runs[name] += [s.ratio for s in stats]
        run_blocks[name] += list(blocks)
log_ratio = {name: np.log(values) for name, values in runs.items()}


def sigma(a, b) -> float:
    """One measurement's σ (%) from two measurements of every child: the σ of their log ratio / √2."""
    difference = a - b
    return 100 * float(np.std(difference - np.median(difference))) / np.sqrt(2)


print(f"{CHILDREN} children at {RESOLUTION} px, {GROUP} per reference round, harness {harness.settings()}\n")
print("| measurements compared | one measurement's σ |")
print("|---|---|")
for a, b, what in (("A1", "A2", "same weights, a second later"), ("A1", "B", "a second copy of the weights"),
                   ("A2", "B", "a second copy of the weights"), ("J1", "J2", "activations moved every block")):
    print(f"| {a} / {b} ({what}) | {sigma(log_ratio[a], log_ratio[b]):.2f} % |")

within_child = np.concatenate([np.log(r) - np.median(np.log(r)) for _, r in run_blocks["A1"] + run_blocks["A2"]])
print(f"\nTimed blocks per measurement: {np.mean([len(r) for _, r in run_blocks['A1']]):.1f}; one block's ratio "
      f"scatters around its measurement's median by σ {100 * within_child.std():.1f} % "
      f"(IQR/1.349 {100 * (np.percentile(within_child, 75) - np.percentile(within_child, 25)) / 1.349:.1f} %).")


def statistic(name: str, times: np.ndarray, ratios: np.ndarray) -> float:
    reference = times / ratios  # the reference's per-call time interpolated beside each block
    if name == "median of block ratios (kept)":
        return float(np.median(ratios))
    if name == "geometric mean of block ratios":
        return float(np.exp(np.mean(np.log(ratios))))
    if name == "median time / median reference":
        return float(np.median(times) / np.median(reference))
    quantile = {"10th percentiles": 10, "25th percentiles": 25, "minima": 0}[name]
    return float(np.percentile(times, quantile) / np.percentile(reference, quantile))


print("\n| statistic of a measurement's blocks | one measurement's σ (A1 / A2) |")
print("|---|---|")
for name in ("median of block ratios (kept)", "geometric mean of block ratios", "median time / median reference",
             "10th percentiles", "25th percentiles", "minima"):
    a, b = ([np.log(statistic(name, t, r)) for t, r in run_blocks[run]] for run in ("A1", "A2"))
    print(f"| {name} | {sigma(np.array(a), np.array(b)):.2f} % |")

table = LatencyTable.from_dict(json.loads(TABLE.read_text()))
estimate = table.estimate(archs, mode="calibrated")
print(f"\nAgainst the calibrated table ({TABLE.name}, anchor {table.anchor_ms:.2f} ms):\n")
print("| measurement of each child | s / child | median error | within ±5 % | within ±5 % of its own median |")
print("|---|---|---|---|---|")
for label, names in (("A1", ["A1"]), ("B", ["B"]), ("A2", ["A2"]), ("J1", ["J1"]),
                     ("A1, A2 (geometric mean)", ["A1", "A2"]), ("A1, B, A2 (geometric mean)", ["A1", "B", "A2"])):
    ratio = np.exp(np.mean([log_ratio[name] for name in names], axis=0))
    measured = np.array([table.measured_ms(r, table.anchor_ms) for r in ratio])
    error = estimate / measured - 1
    cost = sum(seconds[name] for name in names) / CHILDREN
    print(f"| {label} | {cost:.3f} | {100 * np.median(error):+.2f} % | {100 * np.mean(np.abs(error) <= 0.05):.1f} % | "
          f"{100 * np.mean(np.abs(error - np.median(error)) <= 0.05):.1f} % |")

"""pytest-benchmark suites for the hot paths, compared in CI against the committed baseline (``make bench-check``).

Absolute timings are compared with the baseline by pytest-benchmark; the ratios that must hold on any machine are
measured within one run and recorded in ``extra_info`` (and checked where the issue sets a goal).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from instanas.metagraph import MetaGraph
from instanas.space import (
    MODULE_NAMES,
    full_architecture,
    mobilenetv2_architecture,
    sample_architectures,
    smallest_architecture,
)
from lut.store import load_table
from profiler import PairedTimer, torch_threads

RESOLUTIONS = (32, 64, 224)
MODULE_CELL = 7  # a 64 → 64, stride-1 cell: every module option runs with its shortcut
THREADS = 2


@pytest.fixture(scope="module", autouse=True)
def fixed_threads():
    with torch_threads(THREADS), torch.inference_mode():
        yield


@pytest.fixture(scope="module")
def graphs():
    torch.manual_seed(0)
    return {resolution: MetaGraph(resolution).eval() for resolution in RESOLUTIONS}


def _typical_architecture() -> np.ndarray:
    return sample_architectures(1, keep=0.4, seed=2024)[0]


CHILDREN = {"full": full_architecture, "typical": _typical_architecture, "smallest": smallest_architecture}


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("module", MODULE_NAMES)
def test_module_forward(benchmark, graphs, resolution, module):
    graph = graphs[resolution]
    spec = graph.space.cells[MODULE_CELL]
    block = graph.cells[MODULE_CELL].options[MODULE_NAMES.index(module)]
    x = torch.randn(1, spec.in_channels, spec.input_hw, spec.input_hw)
    benchmark.group = f"module forward @ {resolution} px"
    benchmark(block, x)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("name", list(CHILDREN))
def test_child_forward(benchmark, graphs, resolution, name):
    child = graphs[resolution].child(CHILDREN[name]())
    x = torch.randn(1, 3, resolution, resolution)
    benchmark.group = f"child forward @ {resolution} px"
    benchmark(child, x)


def test_training_mode_forward(benchmark, graphs):
    """A batch of 8 at 32 px, each sample its own architecture (forward only)."""
    selection = torch.from_numpy(sample_architectures(8, keep=np.linspace(0.1, 0.9, 8), seed=1))
    x = torch.randn(8, 3, 32, 32)
    benchmark.group = "training-mode forward"
    benchmark(graphs[32], x, selection)


@pytest.mark.host_bound
def test_lut_loading(benchmark, bench_lut):
    benchmark.group = "LUT"
    table = benchmark(load_table, bench_lut)
    assert table.resolution == 32


@pytest.mark.host_bound
def test_estimate_10000(benchmark, bench_lut):
    table = load_table(bench_lut)
    archs = sample_architectures(10_000, keep=np.random.default_rng(0).uniform(0.05, 0.95, 10_000), seed=0)
    benchmark.group = "LUT"
    estimates = benchmark(table.estimate, archs)
    assert estimates.shape == (10_000,)
    benchmark.extra_info["architectures_per_second"] = round(10_000 / benchmark.stats.stats.median)


def _static_sequential(graph: MetaGraph, arch: np.ndarray) -> nn.Sequential:
    """The same modules as ``graph.child(arch)`` hand-wired into one plain ``nn.Sequential`` (one module per cell)."""
    cells = [cell.options[int(np.flatnonzero(row)[0])] for cell, row in zip(graph.cells, arch) if row.any()]
    assert all(row.sum() <= 1 for row in arch), "a plain Sequential has one module per cell"
    return nn.Sequential(graph.stem, *cells, graph.head).eval()


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_ratios(benchmark, graphs, resolution):
    """Benchmarks the MobileNetV2-like child and records ratios measured in one run: paired timing (alternating
    blocks, :class:`profiler.PairedTimer`), median of repeats, so the machine's changing speed cancels.

    * ``child_over_static``: that child vs the same modules hand-wired into a static ``nn.Sequential`` (goal ≤ 1.05;
      asserted ≤ 1.15 so machine noise cannot fail it while real per-cell overhead would);
    * ``full_over_smallest``: how much skipping modules saves.
    """
    graph = graphs[resolution]
    x = torch.randn(1, 3, resolution, resolution)
    mobilenet = mobilenetv2_architecture()
    child = graph.child(mobilenet)
    pairs = {
        "child_over_static": (child, _static_sequential(graph, mobilenet), 5),
        "full_over_smallest": (graph.child(full_architecture()), graph.child(smallest_architecture()), 3),
    }
    for name, (first, second, repeats) in pairs.items():
        timer = PairedTimer(second, x, threads=THREADS)
        ratios = [timer.measure(first, x, min_run_time=0.2).ratio for _ in range(repeats)]
        benchmark.extra_info[name] = round(float(np.median(ratios)), 3)
    benchmark.group = f"child forward @ {resolution} px"
    benchmark(child, x)
    assert benchmark.extra_info["child_over_static"] <= 1.15
    assert benchmark.extra_info["full_over_smallest"] > 3

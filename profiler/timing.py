"""How latency is measured: batch-1 CPU inference timed with ``torch.utils.benchmark``.

Every figure the suite reports comes from :func:`measure_latency`, so module profiles, child measurements and
benchmarks are comparable: eval mode, ``torch.inference_mode()``, a fixed thread count, warm-up before timing
(oneDNN picks its kernels on the first calls), and the median with its IQR over timed blocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import psutil
import torch
from torch import nn

# torch.utils.benchmark imports cpp_extension, which warns at import time when a CUDA toolkit is installed but no
# GPU is present. That says nothing about CPU timing and would break our one-line error output.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402


def default_threads() -> int:
    """The number of physical cores: hyper-threads share execution units and only add noise."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass(frozen=True)
class LatencyStats:
    """Median and inter-quartile range over timed blocks, in milliseconds."""

    median_ms: float
    iqr_ms: float
    runs: int  # timed blocks
    calls_per_run: int

    def as_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def torch_threads(threads: int):
    """Run the block with ``threads`` intra-op threads, restoring the previous setting after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure_latency(
    module: nn.Module,
    example_input: torch.Tensor,
    *,
    threads: int | None = None,
    min_run_time: float = 0.5,
    max_run_time: float | None = None,
    iqr_threshold: float = 0.1,
    block_time: float = 0.02,
    min_runs: int = 7,
) -> LatencyStats:
    """Time ``module(example_input)``: warm up, then time blocks of calls with ``Timer.timeit``.

    Each block holds enough calls to last about ``block_time`` s (timer overhead stays well under 0.1 %), or less
    when ``min_run_time`` is too short for ``min_runs`` such blocks. Blocks are
    taken for at least ``min_run_time`` s and ``min_runs`` blocks, then until IQR/median < ``iqr_threshold`` or
    ``max_run_time`` (default 5 × ``min_run_time``) is spent; on a noisy machine the IQR then says how far to trust
    the median. Blocks are taken with the Timer's own block loop (``_timeit``) because the public ``timeit``
    precedes every block with max(n/100, 2) warm-up calls, tripling the wall time of one-call blocks; where a
    future torch lacks it, the public call is used. torch's own ``*_autorange`` sizes blocks for 0.01 % overhead, which for a 30 µs module means
    0.3 s blocks and three samples a second: too few for a median and an IQR.
    """
    threads = threads or default_threads()
    max_run_time = max_run_time or 5 * min_run_time
    module.eval()
    timer = benchmark.Timer(stmt="module(x)", globals={"module": module, "x": example_input}, num_threads=threads)
    with torch_threads(threads), torch.inference_mode():
        warmup = timer.timeit(1)  # two warm-up calls and one timed: kernels are picked, caches filled
        block_time = min(block_time, min_run_time / min_runs)  # a short budget still gets min_runs blocks
        calls_per_run = max(1, round(block_time / warmup.median))
        block_seconds = getattr(timer, "_timeit", None) or (lambda number: timer.timeit(number).raw_times[0])
        times: list[float] = []  # seconds per call, one entry per block
        while True:
            times.append(block_seconds(calls_per_run) / calls_per_run)
            spent = sum(times) * calls_per_run
            if len(times) < min_runs or spent < min_run_time:
                continue
            quartiles = np.percentile(times, [25, 50, 75])
            if (quartiles[2] - quartiles[0]) / quartiles[1] < iqr_threshold or spent >= max_run_time:
                break
    return LatencyStats(
        median_ms=float(quartiles[1]) * 1e3,
        iqr_ms=float(quartiles[2] - quartiles[0]) * 1e3,
        runs=len(times),
        calls_per_run=calls_per_run,
    )

"""How latency is measured: batch-1 CPU inference timed with ``torch.utils.benchmark``.

Every figure the suite reports comes from :func:`measure_latency` (raw latency) or :class:`PairedTimer` (latency
relative to a reference network timed in alternating blocks, which cancels the machine's changing speed). Both use
the same blocks: eval mode, ``torch.inference_mode()``, a fixed thread count, warm-up before timing (oneDNN picks
its kernels on the first calls), and the median with its IQR over timed blocks.
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


class _Blocks:
    """Times blocks of calls of one module: warm-up, then blocks sized to about ``block_time`` seconds each.

    Blocks are taken with the Timer's own block loop (``_timeit``) because the public ``timeit`` precedes every block
    with max(n/100, 2) warm-up calls, tripling the wall time of one-call blocks; where a future torch lacks it, the
    public call is used.
    """

    def __init__(self, module: nn.Module, example_input, threads: int, block_time: float):
        module.eval()
        timer = benchmark.Timer(stmt="module(x)", globals={"module": module, "x": example_input}, num_threads=threads)
        warmup = timer.timeit(1)  # two warm-up calls and one timed: kernels are picked, caches filled
        self.calls = max(1, round(block_time / warmup.median))
        self._seconds = getattr(timer, "_timeit", None) or (lambda number: timer.timeit(number).raw_times[0])

    def per_call(self) -> tuple[float, float]:
        """Seconds per call in one block, and the block's wall time."""
        seconds = self._seconds(self.calls)
        return seconds / self.calls, seconds


def _collect(take, *, min_run_time: float, max_run_time: float, iqr_threshold: float, min_runs: int) -> np.ndarray:
    """Call ``take() -> (value, seconds)`` for at least ``min_runs`` samples and ``min_run_time`` s, then until the
    values' IQR/median < ``iqr_threshold`` or ``max_run_time`` s are spent; return the values."""
    values: list[float] = []
    spent = 0.0
    while True:
        value, seconds = take()
        values.append(value)
        spent += seconds
        if len(values) < min_runs or spent < min_run_time:
            continue
        low, median, high = np.percentile(values, [25, 50, 75])
        if (high - low) / median < iqr_threshold or spent >= max_run_time:
            return np.array(values)


def _quartiles_ms(values: np.ndarray) -> tuple[float, float]:
    low, median, high = np.percentile(values, [25, 50, 75])
    return float(median) * 1e3, float(high - low) * 1e3


def measure_latency(
    module: nn.Module,
    example_input,
    *,
    threads: int | None = None,
    min_run_time: float = 0.5,
    max_run_time: float | None = None,
    iqr_threshold: float = 0.1,
    block_time: float = 0.02,
    min_runs: int = 7,
) -> LatencyStats:
    """Time ``module(example_input)`` in blocks of calls (``torch.utils.benchmark.Timer``).

    Blocks last about ``block_time`` s (less when ``min_run_time`` is too short for ``min_runs`` such blocks). They are
    taken for at least ``min_run_time`` s and ``min_runs`` blocks, then until IQR/median < ``iqr_threshold`` or
    ``max_run_time`` (default 5 × ``min_run_time``) is spent; on a noisy machine the IQR says how far to trust the
    median. torch's own ``*_autorange`` sizes blocks for 0.01 % timer overhead, which for a 30 µs module means 0.3 s
    blocks and three samples a second: too few for a median and an IQR.
    """
    threads = threads or default_threads()
    block_time = min(block_time, min_run_time / min_runs)
    with torch_threads(threads), torch.inference_mode():
        blocks = _Blocks(module, example_input, threads, block_time)
        values = _collect(
            blocks.per_call,
            min_run_time=min_run_time,
            max_run_time=max_run_time or 5 * min_run_time,
            iqr_threshold=iqr_threshold,
            min_runs=min_runs,
        )
    median_ms, iqr_ms = _quartiles_ms(values)
    return LatencyStats(median_ms=median_ms, iqr_ms=iqr_ms, runs=len(values), calls_per_run=blocks.calls)


@dataclass(frozen=True)
class PairedStats:
    """A module timed in blocks alternating with blocks of a fixed reference network.

    On a shared machine whose speed changes from second to second, the ratio of adjacent blocks cancels the change:
    measured twice, a child's raw median moved by more than 10 % in 80 % of cases here, its ratio in 3 %.
    """

    median_ms: float  # raw median per call of the module
    iqr_ms: float
    ratio: float  # median over block pairs of module time / reference time
    ratio_iqr: float
    reference_ms: float  # raw median per call of the reference
    runs: int  # block pairs
    calls_per_run: int

    def as_dict(self) -> dict:
        return asdict(self)


class PairedTimer:
    """Times modules in blocks alternating with blocks of one reference network, kept warm between measurements.

    The stop rule watches the ratio's IQR; the time budgets count the wall time of both blocks of each pair.
    """

    def __init__(self, reference: nn.Module, reference_input, *, threads: int | None = None):
        self.reference, self.reference_input = reference.eval(), reference_input
        self.threads = threads or default_threads()
        self._reference_blocks: dict[float, _Blocks] = {}  # by block time; built (and warmed) once each

    def measure(
        self,
        module: nn.Module,
        example_input,
        *,
        min_run_time: float = 0.5,
        max_run_time: float | None = None,
        iqr_threshold: float = 0.1,
        block_time: float = 0.02,
        min_runs: int = 7,
    ) -> PairedStats:
        """Time ``module(example_input)`` against the reference; the stop rule is :func:`measure_latency`'s."""
        block_time = min(block_time, min_run_time / (2 * min_runs))
        module_times: list[float] = []
        reference_times: list[float] = []
        with torch_threads(self.threads), torch.inference_mode():
            blocks = _Blocks(module, example_input, self.threads, block_time)
            if block_time not in self._reference_blocks:
                self._reference_blocks[block_time] = _Blocks(
                    self.reference, self.reference_input, self.threads, block_time
                )
            reference_blocks = self._reference_blocks[block_time]

            def take() -> tuple[float, float]:
                module_time, module_wall = blocks.per_call()
                reference_time, reference_wall = reference_blocks.per_call()
                module_times.append(module_time)
                reference_times.append(reference_time)
                return module_time / reference_time, module_wall + reference_wall

            ratios = _collect(
                take,
                min_run_time=min_run_time,
                max_run_time=max_run_time or 5 * min_run_time,
                iqr_threshold=iqr_threshold,
                min_runs=min_runs,
            )
        median_ms, iqr_ms = _quartiles_ms(np.array(module_times))
        low, ratio, high = np.percentile(ratios, [25, 50, 75])
        return PairedStats(
            median_ms=median_ms,
            iqr_ms=iqr_ms,
            ratio=float(ratio),
            ratio_iqr=float(high - low),
            reference_ms=float(np.median(reference_times)) * 1e3,
            runs=len(ratios),
            calls_per_run=blocks.calls,
        )

"""How latency is measured: batch-1 CPU inference timed with ``torch.utils.benchmark``.

Every figure the suite reports comes from :func:`measure_latency` (raw latency) or :class:`PairedTimer` (latency
relative to a reference network timed in alternating blocks, which cancels the machine's changing speed; one
reference block per module block, or, with :meth:`PairedTimer.measure_group`, one per round of several modules).
Both use the same blocks: eval mode, ``torch.inference_mode()``, a fixed thread count, warm-up before timing
(oneDNN picks its kernels on the first calls), and the median with its IQR over timed blocks. A ``backend``
(:mod:`profiler.backends`) runs each timed module, and a paired timer's reference, in ONNX Runtime or OpenVINO instead
of eager PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import psutil
import torch
from torch import nn

# torch.utils.benchmark imports cpp_extension, which warns at import time when a CUDA toolkit is installed but no
# GPU is present. That says nothing about CPU timing and would break our one-line error output.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
from torch.utils import benchmark  # noqa: E402

from profiler.backends import compile_network  # noqa: E402


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
    """Times blocks of calls of one network (a module, or a backend's compiled callable): warm-up, then blocks sized
    to about ``block_time`` seconds each.

    Warm-up is ``warmup_calls`` calls (three by default). Blocks are taken with the Timer's own block loop
    (``_timeit``) because the public ``timeit`` precedes every block with max(n/100, 2) warm-up calls, tripling the
    wall time of one-call blocks; where a future torch lacks it, the public call is used.
    """

    def __init__(self, network, example_input, threads: int, block_time: float, warmup_calls: int = 3):
        timer = benchmark.Timer(stmt="network(x)", globals={"network": network, "x": example_input},
                                num_threads=threads)
        self._seconds = getattr(timer, "_timeit", None) or (lambda number: timer.timeit(number).raw_times[0])
        for _ in range(max(1, warmup_calls)):  # kernels are picked, caches filled; the last call sizes the blocks
            last = self._seconds(1)
        self.calls = max(1, round(block_time / last))

    def placed(self) -> tuple[float, float, float]:
        """One block: the wall-clock time of its middle, seconds per call, and its wall time."""
        start = time.perf_counter()
        per_call, wall = self.per_call()
        return (start + time.perf_counter()) / 2, per_call, wall

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
        if _should_stop(values, spent, min_run_time, max_run_time, iqr_threshold, min_runs):
            return np.array(values)


def _should_stop(values: list[float], spent: float, min_run_time: float, max_run_time: float, iqr_threshold: float,
                 min_runs: int) -> bool:
    """Enough samples and time, and either a tight spread (IQR/median) or the time budget spent."""
    if len(values) < min_runs or spent < min_run_time:
        return False
    low, median, high = np.percentile(values, [25, 50, 75])
    return (high - low) / median < iqr_threshold or spent >= max_run_time


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
    backend: str = "eager",
) -> LatencyStats:
    """Time ``module(example_input)``, run in ``backend``, in blocks of calls (``torch.utils.benchmark.Timer``).

    Blocks last about ``block_time`` s (less when ``min_run_time`` is too short for ``min_runs`` such blocks). They are
    taken for at least ``min_run_time`` s and ``min_runs`` blocks, then until IQR/median < ``iqr_threshold`` or
    ``max_run_time`` (default 5 × ``min_run_time``) is spent; on a noisy machine the IQR says how far to trust the
    median. torch's own ``*_autorange`` sizes blocks for 0.01 % timer overhead, which for a 30 µs module means 0.3 s
    blocks and three samples a second: too few for a median and an IQR.
    """
    threads = threads or default_threads()
    block_time = min(block_time, min_run_time / min_runs)
    network = compile_network(module, example_input, backend, threads)
    with torch_threads(threads), torch.inference_mode():
        blocks = _Blocks(network, example_input, threads, block_time)
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

    @classmethod
    def combined(cls, measurements: list[PairedStats]) -> PairedStats:
        """Several measurements of one module as one: geometric means of its medians and ratios, the mean ratio IQR
        (one measurement's spread) and reference latency, all their blocks."""
        if len(measurements) == 1:
            return measurements[0]

        def geometric(name: str) -> float:
            return float(np.exp(np.mean([np.log(getattr(m, name)) for m in measurements])))

        return cls(
            median_ms=geometric("median_ms"),
            iqr_ms=float(np.mean([m.iqr_ms for m in measurements])),
            ratio=geometric("ratio"),
            ratio_iqr=float(np.mean([m.ratio_iqr for m in measurements])),
            reference_ms=float(np.mean([m.reference_ms for m in measurements])),
            runs=sum(m.runs for m in measurements),
            calls_per_run=measurements[0].calls_per_run,
        )


class PairedTimer:
    """Times modules in blocks alternating with blocks of one reference network, kept warm between measurements.

    The stop rule watches the ratio's IQR; the time budgets count the wall time of both blocks of each pair. The
    reference and every timed module run in ``backend``.
    """

    def __init__(self, reference: nn.Module, reference_input, *, threads: int | None = None, backend: str = "eager"):
        self.threads = threads or default_threads()
        self.backend = backend
        self.reference = compile_network(reference, reference_input, backend, self.threads)
        self.reference_input = reference_input
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
        warmup_calls: int = 3,
    ) -> PairedStats:
        """Time ``module(example_input)`` against the reference; the stop rule is :func:`measure_latency`'s."""
        block_time = min(block_time, min_run_time / (2 * min_runs))
        module_times: list[float] = []
        reference_times: list[float] = []
        network = compile_network(module, example_input, self.backend, self.threads)
        with torch_threads(self.threads), torch.inference_mode():
            blocks = _Blocks(network, example_input, self.threads, block_time, warmup_calls)
            reference_blocks = self.reference_blocks(block_time)

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
        return _paired_stats(module_times, ratios, float(np.median(reference_times)) * 1e3, blocks.calls)

    def measure_group(
        self,
        modules: list[tuple[nn.Module, object]],
        *,
        min_run_time: float = 0.05,
        max_run_time: float | None = None,
        iqr_threshold: float = 0.1,
        block_time: float = 0.02,
        min_runs: int = 5,
        warmup_calls: int = 1,
    ) -> list[PairedStats]:
        """Time several modules against one reference block per round: ref, m1, m2, …, ref, m1, m2, …

        A module's block is divided by the reference interpolated (linearly in wall time) between the reference blocks
        that enclose the round, so one reference block serves the whole group where :meth:`PairedTimer.measure` spends
        one on every module block. Each module keeps :func:`measure_latency`'s stop rule on its own ratios; its budget
        counts its own blocks and its share of the reference's. ``warmup_calls`` warm-up calls per module (the last one
        sizes its blocks): in a meta-graph's children the modules' kernels were picked when the first child ran them.
        """
        block_time = min(block_time, min_run_time / min_runs)
        max_run_time = max_run_time or 5 * min_run_time
        networks = [(compile_network(module, x, self.backend, self.threads), x) for module, x in modules]
        with torch_threads(self.threads), torch.inference_mode():
            members = [_GroupMember(_Blocks(network, x, self.threads, block_time, warmup_calls))
                       for network, x in networks]
            reference = self.reference_blocks(block_time)
            reference_times: list[float] = []

            def reference_block() -> tuple[float, float, float]:
                block = reference.placed()
                reference_times.append(block[1])
                return block

            before = reference_block()
            while not all(member.done for member in members):
                active = [member for member in members if not member.done]
                placed = [member.blocks.placed() for member in active]
                after = reference_block()
                share = after[2] / len(active)
                for member, (at, per_call, wall) in zip(active, placed):
                    member.times.append(per_call)
                    member.ratios.append(per_call / _interpolated(at, before[:2], after[:2]))
                    member.spent += wall + share
                    member.done = _should_stop(member.ratios, member.spent, min_run_time, max_run_time, iqr_threshold,
                                               min_runs)
                before = after
        reference_ms = float(np.median(reference_times)) * 1e3
        return [_paired_stats(member.times, member.ratios, reference_ms, member.blocks.calls) for member in members]

    def reference_blocks(self, block_time: float) -> _Blocks:
        """The reference's blocks of about ``block_time`` s, built and warmed once (call under ``torch_threads``)."""
        if block_time not in self._reference_blocks:
            self._reference_blocks[block_time] = _Blocks(self.reference, self.reference_input, self.threads, block_time)
        return self._reference_blocks[block_time]


def _paired_stats(module_times, ratios, reference_ms: float, calls: int) -> PairedStats:
    median_ms, iqr_ms = _quartiles_ms(np.array(module_times))
    low, ratio, high = np.percentile(ratios, [25, 50, 75])
    return PairedStats(
        median_ms=median_ms,
        iqr_ms=iqr_ms,
        ratio=float(ratio),
        ratio_iqr=float(high - low),
        reference_ms=reference_ms,
        runs=len(ratios),
        calls_per_run=calls,
    )


class _GroupMember:
    """One module of a timed group: its blocks, and its per-call times with the reference interpolated beside them."""

    def __init__(self, blocks: _Blocks):
        self.blocks = blocks
        self.times: list[float] = []
        self.ratios: list[float] = []
        self.spent = 0.0
        self.done = False


def _interpolated(at: float, before: tuple[float, float], after: tuple[float, float]) -> float:
    """The reference's per-call time at wall-clock ``at``, linear between the blocks (time, value) around it."""
    (t0, v0), (t1, v1) = before, after
    return v0 + (v1 - v0) * (at - t0) / (t1 - t0) if t1 > t0 else (v0 + v1) / 2

"""How things are timed, and on what machine."""

from profiler.timing import LatencyStats, PairedStats, default_threads, measure_latency, measure_paired, torch_threads

__all__ = ["LatencyStats", "PairedStats", "default_threads", "measure_latency", "measure_paired", "torch_threads"]

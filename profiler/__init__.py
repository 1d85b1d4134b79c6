"""How things are timed, and on what machine."""

from profiler.timing import LatencyStats, PairedStats, PairedTimer, default_threads, measure_latency, torch_threads

__all__ = ["LatencyStats", "PairedStats", "PairedTimer", "default_threads", "measure_latency", "torch_threads"]

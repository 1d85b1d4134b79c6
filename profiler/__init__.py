"""How things are timed, and on what machine.

The timing names load torch on first use, so the CLI can set the allocator (:mod:`profiler.allocator`) without it.
"""

import importlib

__all__ = ["LatencyStats", "PairedStats", "PairedTimer", "default_threads", "measure_latency", "torch_threads"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("profiler.timing"), name)
    raise AttributeError(f"module 'profiler' has no attribute {name!r}")

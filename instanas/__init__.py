"""InstaNAS: instance-aware neural architecture search, with latency lookup tables profiled on the target CPU."""

__version__ = "0.1.0"

"""What machine and software a latency was measured on.

A LUT is only a latency for the machine it was profiled on. The fingerprint records the hardware and software, and
its short id hashes the fields that change latency, so a table from another machine, torch build or thread count is
recognised as foreign. So is a table profiled under another allocator setting
(:mod:`profiler.allocator`), or timed in another runtime (:mod:`profiler.backends`): a backend other than eager
PyTorch adds its name and version to the hashed fields, so eager tables keep the ids they had before backends existed.
"""

from __future__ import annotations

import hashlib
import json
import platform
from pathlib import Path

import psutil
import torch

from profiler.allocator import current_allocator
from profiler.backends import backend_version

# ISA extensions that decide which kernels oneDNN/MKL can run.
_RELEVANT_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4", "vnni", "bf16", "asimd", "sve", "neon")
# The fields whose change changes latency; the rest are recorded for the reader only.
LATENCY_FIELDS = (
    "cpu_model",
    "physical_cores",
    "logical_cores",
    "isa_flags",
    "threads",
    "torch_version",
    "torch_cpu_capability",
    "onednn",
    "mkl",
    "malloc",
)
BACKEND_FIELDS = ("backend", "backend_version")  # hashed too, unless the backend is eager


def _cpuinfo() -> dict[str, str]:
    """The first processor's entries of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def machine_fingerprint(threads: int, backend: str = "eager") -> dict:
    """The fields describing this machine and software when running ``backend`` with ``threads`` intra-op threads."""
    info = _cpuinfo()
    flags = (info.get("flags") or info.get("Features") or "").split()
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "architecture": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "isa_flags": sorted(flag for flag in flags if flag.startswith(_RELEVANT_FLAG_PREFIXES)),
        "threads": threads,
        "torch_version": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn": torch.backends.mkldnn.is_available(),
        "mkl": torch.backends.mkl.is_available(),
        "malloc": current_allocator(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "backend": backend,
        "backend_version": backend_version(backend),
    }


def fingerprint_id(fields: dict) -> str:
    """A short stable id: the hash of the latency-relevant fields only."""
    names = LATENCY_FIELDS + (BACKEND_FIELDS if fields.get("backend", "eager") != "eager" else ())
    relevant = {name: fields.get(name) for name in names}
    digest = hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()
    return digest[:12]

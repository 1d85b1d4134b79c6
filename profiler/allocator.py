"""How this process's allocator serves activations: pinned, so what a module costs does not depend on what ran before.

glibc's malloc serves blocks above its mmap threshold (128 KiB at first) with freshly mapped pages, and moves the
threshold and trims the heap as the process runs. A batch-1 activation of a few MB then costs thousands of page
faults on one call and none a few calls later, depending on the process's history: cell 0's ``mb3e6`` at 64 px took
2.1–5.7 ms (982–3,587 faults per call) across three processes, before and after a child ran, and 0.81–0.88 ms with the
thresholds pinned (``docs/results/allocator/page_faults.md``). Timings that move with history are not
additive, so no lookup table can sum them. Pinning the thresholds with ``mallopt`` keeps every activation on the heap,
which is also what a deployment with a tuned allocator (jemalloc, tcmalloc, or these settings) sees.

The setting is part of the machine fingerprint: a table profiled under one setting is foreign under the other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

ALLOCATOR_MODES = ("pinned", "system")
# glibc's largest mmap threshold: every activation of a batch-1 224 px network (≤ 10 MB) stays below it.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024  # freed heap memory is kept, not returned to the OS and faulted in again
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers

_current = "system"


def set_allocator(mode: str) -> str:
    """Apply ``mode`` ("pinned" or "system") to this process; return the setting now in effect.

    "pinned" on glibc fixes both thresholds; where the C library is not glibc it cannot, and the setting stays
    "system". "system" leaves thresholds that were already pinned as they are (glibc cannot unpin them), so the
    setting reported is the one in effect.
    """
    global _current
    if mode not in ALLOCATOR_MODES:
        raise ValueError(f"unknown allocator mode {mode!r}: use one of {', '.join(ALLOCATOR_MODES)}")
    if mode == "pinned" and _current != "pinned" and _glibc_mallopt(
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    ):
        _current = "pinned"
    return _current


def current_allocator() -> str:
    """The allocator setting of this process: "pinned" or "system"."""
    return _current


def _glibc_mallopt(*settings: tuple[int, int]) -> bool:
    """Call glibc's ``mallopt`` for each (parameter, value); False where the C library is not glibc or refuses."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)

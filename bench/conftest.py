"""Fixtures of the benchmark suite: a real LUT, and a machine-speed probe beside every benchmark.

This shared machine's speed swings about 3× within an hour, so absolute timings are not comparable across runs.
Before and after each benchmark, torchvision's MobileNetV2 at 32 px is timed; ``bench/check.py`` divides every
benchmark's change by the probe's change before judging a slowdown. The probe must not use this project's code:
a probe built from our own modules slows down with them and hides the very regression it should expose.
"""

import numpy as np
import pandas as pd
import pytest
import torch

from lut.store import save_table
from profiler.allocator import set_allocator
from profiler import measure_latency
from profiler.fingerprint import fingerprint_id, machine_fingerprint
from profiler.space_profile import profile_space

PROBE_THREADS = 2
set_allocator("pinned")  # as the CLI runs


@pytest.fixture(scope="session")
def speed_probe():
    from torchvision.models import mobilenet_v2

    torch.manual_seed(0)
    probe = mobilenet_v2(num_classes=10).eval()
    image = torch.randn(1, 3, 32, 32)
    return lambda: measure_latency(probe, image, threads=PROBE_THREADS, min_run_time=0.2).median_ms


@pytest.fixture(autouse=True)
def probe_machine_speed(request, speed_probe):
    """Record the probe's latency around each benchmark (geometric mean of before and after) in its extra_info."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    before = speed_probe()
    yield
    benchmark.extra_info["probe_ms"] = float(np.sqrt(before * speed_probe()))


@pytest.fixture(scope="session")
def bench_lut(tmp_path_factory):
    """A real, quickly profiled 32 px LUT file for the loading and estimation benchmarks."""
    settings = {"threads": 2, "min_run_time": 0.005, "rounds": 1, "seed": 0, "batch_size": 1}
    records = pd.DataFrame(
        measurement.as_record() for measurement in profile_space(32, threads=2, min_run_time=0.005, rounds=1)
    )
    fields = machine_fingerprint(2)
    table = save_table(
        records,
        resolution=32,
        fingerprint={"id": fingerprint_id(fields), "fields": fields},
        settings=settings,
        store=tmp_path_factory.mktemp("store"),
    )
    return table.path

"""Fixtures of the benchmark suite: a real LUT, and a machine-speed probe beside every benchmark.

This shared machine's speed swings about 3× within an hour, so absolute timings are not comparable across runs.
Before and after each benchmark, torchvision's MobileNetV2 at 32 px is timed; ``bench/check.py`` divides every
benchmark's change by the probe's change before judging a slowdown. The probe must not use this project's code:
a probe built from our own modules slows down with them and hides the very regression it should expose.

The machine's speed states move convolutions and interpreter work by different amounts (between two runs the
MobileNetV2 probe was 0.59× while loading a LUT took 0.99× the time), so a benchmark of host-side work — JSON, numpy —
is marked ``@pytest.mark.host_bound`` and judged against a host probe of the same kind: parsing a JSON document and a
numpy matrix-vector product, again without project code.
"""

import json
import timeit

import numpy as np
import pandas as pd
import pytest
import torch

from lut.store import save_table
from profiler import measure_latency
from profiler.allocator import set_allocator
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


@pytest.fixture(scope="session")
def host_probe():
    rng = np.random.default_rng(0)
    entries = [{"cell": i % 17, "module": f"m{i % 5}", "ms": float(ms)} for i, ms in enumerate(rng.random(2000))]
    document = json.dumps(entries)
    masks = rng.random((10_000, 85)) < 0.4
    weights = rng.random(85)

    def work():
        json.loads(document)
        masks @ weights

    timer = timeit.Timer(work)
    number, _ = timer.autorange()  # about 0.2 s per repeat
    return lambda: min(timer.repeat(3, number)) / number * 1e3


def pytest_configure(config):
    config.addinivalue_line("markers", "host_bound: judge this benchmark against the host (JSON, numpy) probe")


@pytest.fixture(autouse=True)
def probe_machine_speed(request, speed_probe, host_probe):
    """Record the probe's latency around each benchmark (geometric mean of before and after) in its extra_info,
    and which probe it was."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    benchmark = request.getfixturevalue("benchmark")
    host = request.node.get_closest_marker("host_bound") is not None
    probe = host_probe if host else speed_probe
    before = probe()
    yield
    benchmark.extra_info["probe_ms"] = float(np.sqrt(before * probe()))
    benchmark.extra_info["probe"] = "host" if host else "mobilenet_v2"


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

import pandas as pd
import pytest

from lut.store import save_table
from profiler.fingerprint import fingerprint_id, machine_fingerprint
from profiler.space_profile import profile_space


@pytest.fixture(scope="session")
def bench_lut(tmp_path_factory):
    """A real, quickly profiled 32 px LUT file for the loading and estimation benchmarks."""
    settings = {"threads": 2, "min_run_time": 0.005, "rounds": 1, "seed": 0, "batch_size": 1}
    records = pd.DataFrame(
        measurement.as_record()
        for measurement in profile_space(32, threads=2, min_run_time=0.005, rounds=1)
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

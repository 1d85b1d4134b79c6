"""bench/check.py: slowdowns are judged after dividing out the machine-speed probe."""

import json
import subprocess
import sys
from pathlib import Path

CHECK = Path(__file__).parents[1] / "bench" / "check.py"


def _run_file(path, medians_and_probes: dict, probe_name: str = "mobilenet_v2") -> Path:
    benchmarks = [
        {"fullname": name, "group": name[0], "stats": {"min": fastest},
         "extra_info": {"probe_ms": probe, "probe": probe_name}}
        for name, (fastest, probe) in medians_and_probes.items()
    ]
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


def _check(current, baseline):
    return subprocess.run(
        [sys.executable, str(CHECK), str(current), "--baseline", str(baseline)], capture_output=True, text=True
    )


def test_a_slower_group_fails_naming_it_and_its_worst_benchmark(tmp_path):
    baseline = _run_file(tmp_path / "base.json", {"a1": (1.0, 5.0), "a2": (2.0, 5.0), "b1": (2.0, 5.0)})
    current = _run_file(tmp_path / "now.json", {"a1": (2.0, 5.0), "a2": (3.6, 5.0), "b1": (2.2, 5.0)})
    result = _check(current, baseline)
    assert result.returncode == 1
    assert "REGRESSION: group 'a' is 1.90× slower (limit 1.5×), worst: a1" in result.stdout
    assert "group 'b'" in result.stdout and "REGRESSION: group 'b'" not in result.stdout


def test_one_much_slower_benchmark_fails_alone(tmp_path):
    baseline = _run_file(tmp_path / "base.json", {"a1": (1.0, 5.0), "a2": (1.0, 5.0), "a3": (1.0, 5.0)})
    current = _run_file(tmp_path / "now.json", {"a1": (3.0, 5.0), "a2": (1.0, 5.0), "a3": (1.0, 5.0)})
    result = _check(current, baseline)
    assert result.returncode == 1 and "REGRESSION: a1 is 3.00× slower" in result.stdout
    assert "REGRESSION: group" not in result.stdout


def test_a_slower_machine_is_not_a_regression(tmp_path):
    baseline = _run_file(tmp_path / "base.json", {"a": (1.0, 5.0)})
    current = _run_file(tmp_path / "now.json", {"a": (2.4, 12.0)})  # everything 2.4x slower, probe included
    result = _check(current, baseline)
    assert result.returncode == 0 and "REGRESSION" not in result.stdout


def test_unusable_input_is_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    result = _check(broken, broken)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and result.stderr.count("\n") == 1


def test_a_benchmark_timed_beside_another_probe_is_refused(tmp_path):
    baseline = _run_file(tmp_path / "base.json", {"a": (1.0, 5.0)})
    current = _run_file(tmp_path / "now.json", {"a": (1.0, 5.0)}, probe_name="host")
    result = _check(current, baseline)
    assert result.returncode == 2
    assert "a: timed beside another speed probe" in result.stderr and "make bench-baseline" in result.stderr

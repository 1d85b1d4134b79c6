"""`instanas correlate` and `instanas calibrate`: real children measured against a real LUT, end to end."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from instanas.correlate import agreement, correlation_sample
from instanas.space import format_architecture, parse_architecture
from lut.store import load_table
from lut.table import fit_calibration

REPORT_KEYS = {"n", "pearson", "spearman", "kendall", "rmse_ms", "mape_pct", "within_5pct", "within_10pct", "slope",
               "intercept", "lut", "fingerprint"}
QUICK = ("--resolution", "32", "--min-time", "0.01")


def test_small_correlate_end_to_end(profiled, tmp_path, cli):
    out = tmp_path / "run"
    result = cli("correlate", *QUICK, "-n", "20", "--lut", str(profiled), "--out", str(out), "--seed", "5")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report)
    assert report["n"] == 20 and report["mode"] == "plain" and report["lut"]["path"].endswith(profiled.name)
    assert not os.path.isabs(report["lut"]["path"]), "reports carry no absolute paths"
    assert -1 <= report["pearson"] <= 1 and 0 <= report["within_10pct"] <= 1
    assert report["pearson"] > 0.5, "rich children are slower than cheap ones on any machine"
    assert (out / "scatter.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    results = pd.read_csv(out / "results.csv")
    assert sorted(results["index"]) == list(range(20))
    archs, _ = correlation_sample(20, seed=5)
    assert results["arch"].tolist() == [format_architecture(archs[i]) for i in results["index"]]
    table = load_table(profiled)
    np.testing.assert_allclose(results["estimate_ms"], table.estimate(archs[results["index"]]))
    assert (results["measured_ms"] > 0).all()
    assert "LUT vs measured at 32 px" in result.stdout and "scatter.png" in result.stdout


def test_killed_correlate_resumes_to_exactly_n_rows(profiled, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "instanas", "correlate", *QUICK, "-n", "20", "--lut", str(profiled),
               "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") > 6):
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    kept = pd.read_csv(results).dropna()
    assert 5 <= len(kept) < 20, "killed mid-way"
    assert not (out / "report.json").exists()

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    final = pd.read_csv(results)
    assert len(final) == 20 and sorted(final["index"]) == list(range(20)), "no row lost or repeated"
    merged = kept.merge(final, on="index", suffixes=("_kept", "_final"))
    np.testing.assert_array_equal(merged["measured_ms_kept"], merged["measured_ms_final"])
    assert json.loads((out / "report.json").read_text())["n"] == 20


def test_resume_with_other_settings_is_refused(profiled, tmp_path, cli):
    out = tmp_path / "run"
    assert cli("correlate", *QUICK, "-n", "3", "--lut", str(profiled), "--out", str(out)).returncode == 0
    again = cli("correlate", *QUICK, "-n", "4", "--lut", str(profiled), "--out", str(out), "--resume")
    assert again.returncode == 2 and "other settings (n 3 → 4)" in again.stderr and again.stderr.count("\n") == 1


def test_lut_of_another_resolution_or_machine_is_refused(profiled, tmp_path, cli):
    other_resolution = cli("correlate", "--resolution", "64", "-n", "3", "--lut", str(profiled), "--out", str(tmp_path))
    assert other_resolution.returncode == 2 and "not 64 px" in other_resolution.stderr
    payload = json.loads(profiled.read_text())
    payload["fingerprint"]["id"] = "0123456789ab"
    from lut.table import content_hash

    payload["content_hash"] = content_hash(payload)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps(payload))
    refused = cli("correlate", *QUICK, "-n", "3", "--lut", str(foreign), "--out", str(tmp_path / "x"))
    assert refused.returncode == 2 and "--allow-foreign-lut" in refused.stderr
    assert refused.stderr.count("\n") == 1 and not (tmp_path / "x").exists()


def test_lut_timed_against_another_reference_is_refused(profiled, tmp_path, cli):
    """Its anchor converts ratios to another network's milliseconds: new measurements cannot use it."""
    payload = json.loads(profiled.read_text())
    assert payload["reference"]["resolution"] == 32
    payload["reference"]["resolution"] = 224
    from lut.table import content_hash

    payload["content_hash"] = content_hash(payload)
    other = tmp_path / "other-reference.json"
    other.write_text(json.dumps(payload))
    for command in ("correlate", "calibrate"):
        refused = cli(command, *QUICK, "-n", "10", "--lut", str(other), "--out", str(tmp_path / command))
        assert refused.returncode == 2 and "another reference network" in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1 and not (tmp_path / command).exists()
    assert cli("estimate", "--resolution", "32", "--arch", "-".join(["10000"] * 17), "--lut", str(other)).returncode == 0


def test_calibrate_adds_a_calibrated_version_used_by_correlate(profiled, tmp_path, cli):
    store = tmp_path / "store"
    lut = store / profiled.parent.name / profiled.name
    lut.parent.mkdir(parents=True)
    shutil.copy(profiled, lut)
    measured = tmp_path / "calibration"
    result = cli("calibrate", *QUICK, "-n", "12", "--lut", str(lut), "--store", str(store), "--out", str(measured))
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in lut.parent.glob("*.json")) == ["res32-v1.json", "res32-v2.json"]
    calibrated = load_table(lut.parent / "res32-v2.json")
    assert calibrated.calibration["children"] == 12 and calibrated.default_mode == "calibrated"
    assert calibrated.meta["derived_from"]["content_hash"] == load_table(profiled).content_hash
    calibration_archs = set(pd.read_csv(measured / "results.csv")["arch"])

    out = tmp_path / "validation"
    run = cli("correlate", *QUICK, "-n", "10", "--lut", str(calibrated.path), "--out", str(out))
    assert run.returncode == 0, run.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "calibrated" and set(report["by_mode"]) == {"plain", "calibrated"}
    validation_archs = set(pd.read_csv(out / "results.csv")["arch"])
    assert not calibration_archs & validation_archs, "calibration children are kept apart from validation"

    arch = next(iter(validation_archs))
    estimate = cli("estimate", "-r", "32", "--arch", arch, "--lut", str(calibrated.path), "--json")
    payload = json.loads(estimate.stdout)
    fit = calibrated.calibration
    plain = calibrated.estimate(parse_architecture(arch))
    modules = parse_architecture(arch).sum()
    expected = fit["scale"] * plain + fit["per_module_ms"] * modules + fit["per_network_ms"]
    assert payload["mode"] == "calibrated" and payload["estimate_ms"] == pytest.approx(expected)
    plain_run = cli("estimate", "-r", "32", "--arch", arch, "--lut", str(calibrated.path), "--mode", "plain", "--json")
    assert json.loads(plain_run.stdout)["estimate_ms"] == pytest.approx(plain)


def test_calibrated_mode_needs_a_calibration(profiled, cli):
    arch = format_architecture(correlation_sample(1, 0)[0][0])
    result = cli("estimate", "-r", "32", "--arch", arch, "--lut", str(profiled), "--mode", "calibrated")
    assert result.returncode == 2 and "has no calibration" in result.stderr


def test_fit_calibration_recovers_known_costs():
    rng = np.random.default_rng(0)
    plain = rng.uniform(5, 50, 200)
    modules = rng.integers(7, 86, 200)
    measured = 1.1 * plain + 0.06 * modules + 0.4 + rng.normal(0, 0.01, 200)
    fit = fit_calibration(plain, modules, measured)
    assert fit["scale"] == pytest.approx(1.1, abs=0.01)
    assert fit["per_module_ms"] == pytest.approx(0.06, abs=0.002)
    assert fit["per_network_ms"] == pytest.approx(0.4, abs=0.05)


def test_agreement_statistics():
    measured = np.array([10.0, 20.0, 30.0, 40.0])
    exact = agreement(measured, measured)
    assert exact["pearson"] == pytest.approx(1) and exact["mape_pct"] == 0 and exact["within_5pct"] == 1
    off = agreement(measured * 1.08, measured)  # every estimate 8 % high
    assert off["within_5pct"] == 0 and off["within_10pct"] == 1
    assert off["mape_pct"] == pytest.approx(8) and off["slope"] == pytest.approx(1 / 1.08)
    assert off["rmse_ms"] == pytest.approx(np.sqrt(np.mean((0.08 * measured) ** 2)))
    shuffled = agreement(measured, measured[::-1])
    assert shuffled["spearman"] == pytest.approx(-1) and shuffled["kendall"] == pytest.approx(-1)


def test_correlation_sample_spans_cheap_to_rich():
    archs, keep = correlation_sample(2000, seed=0)
    assert 0.05 <= keep.min() and keep.max() <= 0.95
    sizes = archs.sum(axis=(1, 2))
    assert sizes.min() <= 15 and sizes.max() >= 75
    np.testing.assert_array_equal(archs, correlation_sample(2000, seed=0)[0])


def test_ctrl_c_keeps_rows_and_reports_them(profiled, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "instanas", "correlate", *QUICK, "-n", "60", "--lut", str(profiled),
               "--out", str(out)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A runner started in the background of a script inherits SIGINT as ignored; a user's terminal does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    results = out / "results.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (results.exists() and results.read_text().count("\n") > 5):
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "--resume" in stderr
    rows = pd.read_csv(results)
    report = json.loads((out / "report.json").read_text())
    assert 5 <= report["n"] == len(rows) < 60

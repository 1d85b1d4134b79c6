"""Timing backends: one child exported to ONNX and run by ONNX Runtime or OpenVINO, and a table per backend."""

import importlib.util
import json
import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

from instanas.metagraph import OutputMerge
from instanas.space import format_architecture, mobilenetv2_architecture, smallest_architecture
from lut.store import load_table
from profiler.backends import OnnxRuntimeNetwork, compile_network, seeded_child
from profiler.fingerprint import fingerprint_id, machine_fingerprint
from profiler.harness import RUNTIME_DEFAULTS, Harness
from profiler.reference import reference_timer


def _needs(package: str, extra: str):
    return pytest.mark.skipif(importlib.util.find_spec(package) is None,
                              reason=f"{package} is not installed (pip install 'instanas[{extra}]')")


needs_onnxruntime = _needs("onnxruntime", "onnx")
needs_openvino = _needs("openvino", "openvino")


def _rich_and_empty() -> np.ndarray:
    """MobileNetV2's cells, one of them empty (cell 2) and one with all five modules (cell 8)."""
    arch = mobilenetv2_architecture().copy()
    arch[2] = 0
    arch[8] = 1
    return arch


ARCHS = {"smallest (empty cells)": smallest_architecture(), "mobilenetv2-like": mobilenetv2_architecture(),
         "an empty cell and a 5-module cell": _rich_and_empty()}


@needs_onnxruntime
@pytest.mark.parametrize("name", ARCHS)
def test_an_exported_child_runs_in_onnx_runtime_as_in_pytorch(name, tmp_path, cli):
    """`instanas export` writes an ONNX file that ONNX Runtime loads and that computes PyTorch's output for the same
    seeded child; the child's output depends on its input, so the agreement is not that of two constants; the graph
    holds exactly the child's convolutions (unselected modules are not in it)."""
    import onnx

    arch, out = ARCHS[name], tmp_path / "child.onnx"
    result = cli("export", "-r", "32", "-a", format_architecture(arch), str(out))
    assert result.returncode == 0, result.stderr
    printed = float(re.search(r"max abs difference (\S+) ", result.stdout).group(1))
    child = seeded_child(arch, 32)
    session = OnnxRuntimeNetwork(out.read_bytes(), threads=1)
    images = [torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) for seed in (5, 6)]
    with torch.inference_mode():
        expected = [child(image).numpy() for image in images]
    produced = session(images[0])
    difference = np.abs(produced - expected[0]).max()
    assert np.allclose(produced, expected[0], rtol=1e-4, atol=1e-5)
    assert np.abs(expected[1] - expected[0]).max() > 100 * max(difference, printed, 1e-7)
    graph = onnx.load(str(out)).graph
    convolutions = sum(isinstance(module, nn.Conv2d) for module in child.modules())
    assert sum(node.op_type == "Conv" for node in graph.node) == convolutions


def test_export_refuses_an_invalid_architecture_in_one_line(tmp_path, cli):
    result = cli("export", "-r", "32", "-a", "10000", str(tmp_path / "child.onnx"))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "child.onnx").exists()


@pytest.mark.parametrize("backend", [pytest.param("onnxruntime", marks=needs_onnxruntime),
                                     pytest.param("openvino", marks=needs_openvino)])
def test_a_backend_computes_what_eager_pytorch_computes(backend):
    """The compiled child and a 3-way cell merge (several inputs, as the profile times it) give eager's outputs."""
    child = seeded_child(_rich_and_empty(), 32)
    image = torch.randn(1, 3, 32, 32)
    outputs = tuple(torch.randn(1, 24, 8, 8) for _ in range(3))
    merge = OutputMerge("mean")
    with torch.inference_mode():
        expected_child, expected_merge = child(image).numpy(), merge(outputs).numpy()
    assert np.allclose(compile_network(child, image, backend, 1)(image), expected_child, rtol=1e-4, atol=1e-5)
    assert np.allclose(compile_network(merge, outputs, backend, 1)(outputs), expected_merge, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", [pytest.param("onnxruntime", marks=needs_onnxruntime),
                                     pytest.param("openvino", marks=needs_openvino)])
def test_paired_timing_runs_the_reference_in_the_same_backend(backend):
    timer = reference_timer(1, backend)
    assert not isinstance(timer.reference, nn.Module), "the reference is the runtime's compiled network"
    stats = timer.measure(seeded_child(smallest_architecture(), 32), torch.randn(1, 3, 32, 32),
                          min_run_time=0.02)
    assert np.isfinite(stats.ratio) and stats.ratio > 0 and stats.runs >= 7


@pytest.fixture(scope="module")
def onnxruntime_table(tmp_path_factory, cli):
    """A real profile in ONNX Runtime (one quick round, one thread) into its own store."""
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed (pip install 'instanas[onnx]')")
    store = tmp_path_factory.mktemp("ort-store")
    result = cli("profile", "-r", "32", "-t", "1", "--min-time", "0.01", "--rounds", "1", "--out", str(store),
                 "--backend", "onnxruntime")
    assert result.returncode == 0, result.stderr
    (path,) = store.glob("*/res32-v1.json")
    return path


def test_a_table_records_its_backend_and_is_refused_for_another(onnxruntime_table, profiled, cli):
    """The profile's fingerprint names the runtime and its version, so its id differs from the eager table's; each
    table is refused in one line for the other backend and accepted for its own."""
    import onnxruntime

    table, eager = load_table(onnxruntime_table), load_table(profiled)
    fields = table.meta["fingerprint"]["fields"]
    assert (table.backend, fields["backend_version"]) == ("onnxruntime", onnxruntime.__version__)
    assert table.fingerprint_id == fingerprint_id(machine_fingerprint(1, "onnxruntime")) != eager.fingerprint_id
    assert onnxruntime_table.parent.name == table.fingerprint_id, "each backend's tables in their own store folder"
    arch = format_architecture(mobilenetv2_architecture())
    for lut, backend, wrong in ((onnxruntime_table, "onnxruntime", "eager"), (profiled, "eager", "onnxruntime")):
        refused = cli("estimate", "-r", "32", "-a", arch, "--lut", str(lut), "--backend", wrong)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert f"timed in the {backend} backend, not {wrong}" in refused.stderr
        accepted = cli("estimate", "-r", "32", "-a", arch, "--lut", str(lut), "--backend", backend, "--json")
        assert accepted.returncode == 0, accepted.stderr
        assert json.loads(accepted.stdout)["backend"] == backend
    found = cli("estimate", "-r", "32", "-a", arch, "--out", str(onnxruntime_table.parents[1]),
                "--backend", "onnxruntime", "-t", "1", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["estimate_ms"] == pytest.approx(table.estimate(mobilenetv2_architecture()))
    missing = cli("estimate", "-r", "32", "-a", arch, "--out", str(onnxruntime_table.parents[1]), "-t", "1")
    assert missing.returncode == 2 and "no LUT for 32 px" in missing.stderr, "no eager table in that store"


def test_measure_pairs_in_the_backend_of_its_table(onnxruntime_table, cli):
    arch = format_architecture(smallest_architecture())
    result = cli("measure", "-r", "32", "-a", arch, "--paired", "--lut", str(onnxruntime_table),
                 "--backend", "onnxruntime", "--min-time", "0.05", "--json")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["backend"] == "onnxruntime" and measured["paired_ms"] > 0 and measured["threads"] == 1


def test_evaluate_measures_in_the_backend_of_its_table(onnxruntime_table, trained_run, tmp_path, cli):
    """A run trained with the eager table is evaluated with ONNX Runtime's, end to end: its most frequent child, the
    controller and MobileNetV2 are exported and timed in the table's backend (`Stopwatch`), which the report names."""
    result = cli("evaluate", "--run", str(trained_run), "--lut", str(onnxruntime_table), "--measure", "1",
                 "--min-time", "0.02", "--out", str(tmp_path / "evaluation"))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "evaluation" / "report.json").read_text())
    assert report["lut"]["backend"] == "onnxruntime"
    assert report["measured_ms"]["architectures_measured"] == 1 and report["measured_ms"]["controller_ms"] > 0


@pytest.mark.parametrize("backend, extra", [("onnxruntime", "onnx"), ("openvino", "openvino")])
def test_a_missing_runtime_is_one_line_naming_the_extra(backend, extra, monkeypatch, tmp_path, cli):
    """With the runtime's package not importable (as where it is not installed), every command that needs it says
    which extra installs it."""
    monkeypatch.setitem(sys.modules, backend, None)  # `import onnxruntime` raises ImportError, as when absent
    arch = format_architecture(smallest_architecture())
    commands = [("measure", "-r", "32", "-a", arch), ("profile", "-r", "32"), ("correlate", "-r", "32", "-n", "3"),
                ("calibrate", "-r", "32"), ("estimate", "-r", "32", "-a", arch)]
    for command in commands:
        result = cli(*command, "--backend", backend)
        assert result.returncode == 2, (command, result.stderr)
        assert result.stderr.strip() == f"error: backend {backend} needs the {backend} package: " \
                                        f"pip install 'instanas[{extra}]'", command
    if backend == "onnxruntime":
        exported = cli("export", "-r", "32", "-a", arch, str(tmp_path / "child.onnx"))
        assert exported.returncode == 2 and "instanas[onnx]" in exported.stderr


def test_an_unknown_backend_is_one_line(cli):
    result = cli("estimate", "-r", "32", "-a", format_architecture(smallest_architecture()), "--backend", "tvm")
    assert result.returncode == 2 and result.stderr.strip() == \
        "error: --backend 'tvm': use one of eager, onnxruntime, openvino"


@needs_onnxruntime
def test_a_runtime_times_children_one_per_reference_block_by_default(onnxruntime_table, tmp_path, cli):
    """Exported children own their weights, so a group of dense ones evicts each other's from the cache (eager children
    share the meta-graph's): correlate and calibrate time a runtime's children one per reference block, warmed as the
    entries are, unless told otherwise; eager keeps its grouped harness."""
    assert Harness.for_backend("eager") == Harness()
    assert Harness.for_backend("openvino", group=None, min_runs=9) == Harness(**RUNTIME_DEFAULTS | {"min_runs": 9})
    runs = {}
    for name, options in (("default", []), ("grouped", ["--group", "2", "--warmup-calls", "1"])):
        out = tmp_path / name
        result = cli("correlate", "-r", "32", "-n", "3", "--lut", str(onnxruntime_table), "--backend", "onnxruntime",
                     "--min-time", "0.02", "--repeat", "0", "--out", str(out), *options)
        assert result.returncode == 0, result.stderr
        runs[name] = json.loads((out / "run.json").read_text())
    assert (runs["default"]["group"], runs["default"]["warmup_calls"], runs["default"]["min_runs"]) == (1, 3, 7)
    assert (runs["grouped"]["group"], runs["grouped"]["warmup_calls"]) == (2, 1)
    assert runs["default"]["min_run_time"] == runs["grouped"]["min_run_time"] == 0.02

"""What glibc's moving malloc thresholds do to batch-1 timings, and what pinning them (``--malloc pinned``) does.

For each resolution and allocator setting, three fresh processes each time cell 0's five modules, then the
MobileNetV2-like child (``mb3e6`` in every cell), then the five modules again: latency (``measure_latency``, 2
threads) and minor page faults per call. Under the system setting the same module's cost depends on the process and
on what ran before it; pinned, it does not. Writes ``page_faults.json`` and ``page_faults.md`` beside this file.

    python docs/results/allocator/page_faults.py
"""

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
PROCESSES = 3

ONE_PROCESS = """
import json, resource, sys, torch
from profiler.allocator import set_allocator
mode, resolution = sys.argv[1], int(sys.argv[2])
set_allocator(mode)
from instanas.metagraph import MetaGraph
from instanas.space import MODULE_NAMES, mobilenetv2_architecture
from profiler import measure_latency

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

def timed(name, module, x):
    with torch.inference_mode():
        ms = measure_latency(module, x, threads=2, min_run_time=0.3).median_ms
        before = faults()
        for _ in range(10):
            module(x)
    return {"name": name, "ms": ms, "faults_per_call": (faults() - before) / 10}

torch.manual_seed(0)
graph = MetaGraph(resolution).eval()
spec = graph.space.cells[0]
x = torch.randn(1, spec.in_channels, spec.input_hw, spec.input_hw)
modules = list(zip(MODULE_NAMES, graph.cells[0].options))
rows = [timed(name, m, x) | {"position": "first"} for name, m in modules]
image = torch.randn(1, 3, resolution, resolution)
rows.append(timed("mbv2-like child", graph.child(mobilenetv2_architecture()), image) | {"position": "-"})
rows += [timed(name, m, x) | {"position": "after the child"} for name, m in modules]
print(json.dumps(rows))
"""


def main() -> None:
    rows = []
    for resolution in (32, 64, 224):
        for mode in ("system", "pinned"):
            for process in range(PROCESSES):
                out = subprocess.run([sys.executable, "-c", ONE_PROCESS, mode, str(resolution)], check=True,
                                     capture_output=True, text=True).stdout
                rows += [row | {"resolution": resolution, "malloc": mode, "process": process} for row in json.loads(out)]
                print(resolution, mode, process, file=sys.stderr)
    (HERE / "page_faults.json").write_text(json.dumps(rows, indent=1) + "\n")

    lines = ["| resolution | malloc | cell 0 `mb3e6` ms (faults/call) | cell 0 `mb3e3` ms (faults/call) | "
             "MobileNetV2-like child ms (faults/call) |", "|---|---|---|---|---|"]

    def cell(resolution, mode, name):
        picked = [r for r in rows if r["resolution"] == resolution and r["malloc"] == mode and r["name"] == name]
        ms = [r["ms"] for r in picked]
        pf = [r["faults_per_call"] for r in picked]
        return f"{min(ms):.2f}–{max(ms):.2f} ({min(pf):.0f}–{max(pf):.0f})"

    for resolution in (32, 64, 224):
        for mode in ("system", "pinned"):
            lines.append(f"| {resolution} px | {mode} | {cell(resolution, mode, 'mb3e6')} | "
                         f"{cell(resolution, mode, 'mb3e3')} | {cell(resolution, mode, 'mbv2-like child')} |")
    (HERE / "page_faults.md").write_text(
        "Range over 3 fresh processes × 2 positions (before and after the child ran), 2 threads, batch 1; "
        "written by `python docs/results/allocator/page_faults.py`.\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

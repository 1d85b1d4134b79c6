"""What each lever of training speed gives on this CPU, in one process, steps of every variant alternated.

    python docs/results/training-speed/levers.py > docs/results/training-speed/levers.md

One SGD step (``instanas.training.loop.supervised_step``) of the meta-graph on the shrinking schedule's per-image
children (keep ~ U[0.05, 1]) and of the MobileNetV2-like child, 2 threads, 32 px, random images. Variants: the plain
path (contiguous, fp32), channels-last, bf16 autocast, batch 64, and ``torch.compile`` of the static network. Each
figure is the median images/s over the rounds, and its ratio to the plain path at batch 32 measured beside it.
"""

from __future__ import annotations

import contextlib
import platform
import time
from pathlib import Path

import numpy as np
import torch

from instanas.metagraph import MetaGraph
from instanas.space import mobilenetv2_architecture, sample_architectures
from instanas.training.loop import supervised_step

ROUNDS, WARMUP = 8, 2
VARIANTS = {  # name: (memory format, batch, bf16 autocast, compiled)
    "plain (contiguous, fp32, batch 32)": (torch.contiguous_format, 32, False, False),
    "channels-last, batch 32": (torch.channels_last, 32, False, False),
    "channels-last, batch 64": (torch.channels_last, 64, False, False),
    "bf16 autocast, batch 32": (torch.contiguous_format, 32, True, False),
    "channels-last + bf16, batch 32": (torch.channels_last, 32, True, False),
    "channels-last + torch.compile, batch 32 (static network only)": (torch.channels_last, 32, False, True),
}


def _step(variant, workload, rng):
    layout, batch, bf16, compiled = variant
    torch.manual_seed(0)
    graph = MetaGraph(32, 10).to(memory_format=layout).train()
    optimizer = torch.optim.SGD(graph.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
    labels = torch.randint(0, 10, (batch,))
    if workload == "meta-graph":
        def selection():
            return torch.as_tensor(sample_architectures(batch, keep=rng.uniform(0.05, 1, batch),
                                                        seed=int(rng.integers(2**31))))
        model = graph
    else:
        child = graph.child(mobilenetv2_architecture())
        model = torch.compile(child) if compiled else child
        def selection():
            return None
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    def step() -> float:
        chosen = selection()
        start = time.perf_counter()
        with autocast():
            supervised_step(model, optimizer, images, labels, chosen)
        return batch / (time.perf_counter() - start)

    return step


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 2 threads; "
          f"AMX: {'amx_bf16' in Path('/proc/cpuinfo').read_text()}\n")
    print("| variant | meta-graph, img/s | × plain | MobileNetV2-like child, img/s | × plain |")
    print("|---|---|---|---|---|")
    results = {}
    for workload in ("meta-graph", "child"):
        variants = {name: v for name, v in VARIANTS.items() if workload == "child" or not v[3]}
        compile_start = time.perf_counter()
        steps = {name: _step(variant, workload, rng) for name, variant in variants.items()}
        rates = {name: [] for name in steps}
        for round_ in range(WARMUP + ROUNDS):
            for name, step in steps.items():
                rate = step()
                if round_ >= WARMUP:
                    rates[name].append(rate)
        results[workload] = {name: float(np.median(values)) for name, values in rates.items()}
        if workload == "child":
            results["compile_s"] = time.perf_counter() - compile_start
    plain = next(iter(VARIANTS))
    for name in VARIANTS:
        cells = []
        for workload in ("meta-graph", "child"):
            rate = results[workload].get(name)
            cells += ["–", "–"] if rate is None else [f"{rate:.1f}", f"{rate / results[workload][plain]:.2f}"]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"\nThe child's rounds, torch.compile's first call (its compilation) included, took "
          f"{results['compile_s']:.0f} s.")


if __name__ == "__main__":
    main()

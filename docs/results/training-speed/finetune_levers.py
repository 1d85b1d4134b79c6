"""What the fine-tuning step gains from each lever on this CPU, in one process, steps of every variant alternated.

    python docs/results/training-speed/finetune_levers.py > docs/results/training-speed/finetune-levers.md

Fine-tuning trains the meta-graph with Adam on the architectures a fixed controller gives each image. Two policy
shapes: every image its own random architecture (the bench's untrained controller) and a searched controller's
(ten architectures shared by the batch, keep 0.35, as the cluttered search ended with ten). Variants: the plain path
(contiguous, fp32, batch 32, PyTorch's default Adam, a loop over the parameters on CPU), channels-last, Adam's fused
CPU kernel, and batch 64. Forward, backward and optimizer step are timed apart; each figure is the median over the
rounds, with its images/s ratio to the plain path measured beside it. 2 threads, 32 px, random images.
"""

from __future__ import annotations

import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from instanas.metagraph import MetaGraph
from instanas.space import sample_architectures

ROUNDS, WARMUP = 8, 2
VARIANTS = {  # name: (memory format, batch, fused Adam)
    "plain (contiguous, batch 32, Adam loop)": (torch.contiguous_format, 32, False),
    "channels-last, batch 32": (torch.channels_last, 32, False),
    "channels-last + fused Adam, batch 32": (torch.channels_last, 32, True),
    "channels-last, batch 64": (torch.channels_last, 64, False),
    "channels-last + fused Adam, batch 64": (torch.channels_last, 64, True),
}
POLICIES = ("random per image", "ten searched architectures")


def _selection(policy: str, batch: int, rng: np.random.Generator) -> torch.Tensor:
    if policy == "random per image":
        return torch.as_tensor(sample_architectures(batch, keep=0.5, seed=int(rng.integers(2**31))))
    shared = sample_architectures(10, keep=0.35, seed=2)
    return torch.as_tensor(shared[rng.integers(0, len(shared), batch)])


def _step(variant, policy: str, rng: np.random.Generator):
    layout, batch, fused = variant
    torch.manual_seed(0)
    graph = MetaGraph(32, 10).to(memory_format=layout).train()
    optimizer = torch.optim.Adam(graph.parameters(), lr=1e-3, **({"fused": True} if fused else {"foreach": False}))
    images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=layout)
    labels = torch.randint(0, 10, (batch,))

    def step() -> dict[str, float]:
        selection = _selection(policy, batch, rng)
        start = time.perf_counter()
        loss = F.cross_entropy(graph(images, selection), labels)
        forward = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        return {"forward": forward - start, "backward": backward - forward, "optimizer": end - backward,
                "images_per_s": batch / (end - start)}

    return step


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 2 threads\n")
    print("| policy | variant | forward ms | backward ms | Adam ms | img/s | × plain |")
    print("|---|---|---|---|---|---|---|")
    for policy in POLICIES:
        steps = {name: _step(variant, policy, rng) for name, variant in VARIANTS.items()}
        rounds = {name: [] for name in steps}
        for round_ in range(WARMUP + ROUNDS):
            for name, step in steps.items():
                timing = step()
                if round_ >= WARMUP:
                    rounds[name].append(timing)
        medians = {name: {key: float(np.median([r[key] for r in values])) for key in values[0]}
                   for name, values in rounds.items()}
        plain = medians[next(iter(VARIANTS))]["images_per_s"]
        for name, m in medians.items():
            print(f"| {policy} | {name} | {1e3 * m['forward']:.0f} | {1e3 * m['backward']:.0f} | "
                  f"{1e3 * m['optimizer']:.0f} | {m['images_per_s']:.1f} | {m['images_per_s'] / plain:.2f} |")


if __name__ == "__main__":
    main()

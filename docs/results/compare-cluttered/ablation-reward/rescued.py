"""Which images does the controller spend on? Each validation image sorted by what capacity does for it — MobileNetV2
0.4× and 1.0× of the run, both right ("easy"), only 1.0× right ("rescued": the images a richer network pays off on),
only 0.4× right, both wrong ("lost") — and, for every search snapshot's policy, the mean LUT latency per group.

An instance-aware controller worth its name gives the rescued images the richest networks; clutter is only a proxy
for that (the heavy bucket is where capacity helps least: see the README). With ``--another-seed RUN``, the same
count between the run's MobileNetV2 1.0× and that run's (another seed, so another training subset and initialisation):
how many images change sides from training noise alone. With ``--small smallest``, the small network is the space's
smallest architecture (``compare``'s ``smallest`` stage) instead of MobileNetV2 0.4×.

    python docs/results/compare-cluttered/ablation-reward/rescued.py RUN [RUN …] [--another-seed RUN] \
        [--small smallest] > rescued.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from instanas.ablation import snapshot_policies
from instanas.baselines.mobilenetv2 import ScaledMobileNetV2
from instanas.data import dataset_info
from instanas.evaluate import validation_images
from instanas.metagraph import MetaGraph, fixed_selection
from instanas.space import mobilenetv2_architecture, smallest_architecture
from instanas.training.checkpoints import load_checkpoint, read_run
from lut.store import load_table

SMALL = {"0.4x": "MobileNetV2 0.4×", "smallest": "the smallest architecture"}


def right(predict, images: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per image, whether ``predict(batch)``'s top class is the label."""
    with torch.no_grad():
        return np.concatenate([(predict(batch).argmax(1) == truth).numpy()
                               for batch, truth in zip(images.split(250), labels.split(250))])


def groups(small: str) -> dict[str, tuple[bool, bool]]:
    """Each group's name and whether the small and the full network are right on its images."""
    return {"easy": (True, True), "rescued": (False, True), f"only {SMALL[small]} right": (True, False),
            "lost": (False, False)}


def fixed_network(checkpoint: Path, arch: np.ndarray, settings: dict, num_classes: int):
    """A meta-graph checkpoint run on one architecture, as a function of a batch."""
    graph = MetaGraph(settings["resolution"], num_classes, settings["cell_merge"])
    graph.load_state_dict(load_checkpoint(checkpoint)["metagraph"])
    return lambda batch: graph.eval()(batch, fixed_selection(arch, len(batch)))


def small_network(run: Path, small: str, settings: dict, num_classes: int):
    """The run's small network as a function of a batch: MobileNetV2 0.4× or the smallest architecture."""
    if small == "0.4x":
        network = ScaledMobileNetV2(settings["resolution"], 0.4, num_classes)
        network.load_state_dict(load_checkpoint(run / "mobilenetv2-0.4x.pt")["network"])
        return network.eval()
    return fixed_network(run / "smallest.pt", smallest_architecture(), settings, num_classes)


def main(runs: list[Path], another_seed: Path | None, small: str) -> None:
    first = runs[0]
    settings = read_run(first)
    info = dataset_info(settings["dataset"], settings["resolution"], settings["data_dir"])
    batches = list(DataLoader(validation_images(settings), batch_size=500))
    images, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    small_right = right(small_network(first, small, settings, info.num_classes), images, labels)
    full_right = right(fixed_network(first / "mobilenetv2.pt", mobilenetv2_architecture(), settings, info.num_classes),
                       images, labels)
    if another_seed:
        other_right = right(fixed_network(another_seed / "mobilenetv2.pt", mobilenetv2_architecture(), settings,
                                          info.num_classes), images, labels)
        print(f"MobileNetV2 1.0× of {first.name} against that of {another_seed.name} (seed "
              f"{read_run(another_seed)['seed']}): both right {int((full_right & other_right).sum())}, only "
              f"{another_seed.name}'s {int((other_right & ~full_right).sum())}, only {first.name}'s "
              f"{int((full_right & ~other_right).sum())}, both wrong {int((~full_right & ~other_right).sum())}; "
              f"accuracy {full_right.mean():.2%} and {other_right.mean():.2%}.\n")
    named = groups(small)
    print(f"The small network: {SMALL[small]} ({small_right.mean():.2%}); the full one: MobileNetV2 1.0×.\n")
    group = np.empty(len(labels), dtype=object)
    for name, (small_ok, full_ok) in named.items():
        group[(small_right == small_ok) & (full_right == full_ok)] = name
    table = load_table(first / "lut-res32.json")
    counts = ", ".join(f"{name} {int((group == name).sum())}" for name in named)
    print(f"Validation images ({len(labels)}): {counts}. Mean LUT ms (controller excluded) of each search snapshot's "
          "greedy policy, by group:\n")
    print("| run | epoch | all | " + " | ".join(named) + " | rescued − easy |")
    print("|---|---|---|" + "---|" * len(named) + "---|")
    for run in runs:
        for epoch, archs in snapshot_policies(run, images):
            ms = table.estimate(archs, mode=table.default_mode)
            means = {name: ms[group == name].mean() for name in named}
            print(f"| {run.name} | {epoch} | {ms.mean():.2f} | "
                  + " | ".join(f"{means[name]:.2f}" for name in named)
                  + f" | {means['rescued'] - means['easy']:+.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders; the first holds the MobileNetV2 widths")
    parser.add_argument("--another-seed", type=Path, help="a run folder whose mobilenetv2 stage had another seed")
    parser.add_argument("--small", choices=sorted(SMALL), default="0.4x", help="the small network (default 0.4x)")
    arguments = parser.parse_args()
    main(arguments.runs, arguments.another_seed, arguments.small)

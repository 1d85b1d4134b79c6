"""Does a snapshot's policy follow an image's clutter, or only its ink? Per search snapshot: the Spearman of each
validation image's LUT latency with its clutter, with its ink (the image's mean intensity: more fragments, more ink),
and the partial correlation with clutter once ink is taken out of both (ranks, linear residuals).

A policy that spends on clutter because clutter makes an image hard keeps its correlation with ink removed; one that
responds to brightness loses it.

    python docs/results/compare-cluttered/ablation-controller/ink.py RUN [RUN …] > ink.md

The first run's ``lut-res32.json`` prices every run; every run must share its validation images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torch.utils.data import DataLoader

from instanas.ablation import snapshot_policies
from instanas.data import difficulty_of
from instanas.evaluate import validation_images
from instanas.training.checkpoints import read_run
from lut.store import load_table


def partial_spearman(x: np.ndarray, y: np.ndarray, control: np.ndarray) -> float:
    """Spearman of ``x`` and ``y`` with ``control`` regressed out of both ranks."""
    ranks = [stats.rankdata(values) for values in (x, y, control)]

    def residual(values: np.ndarray) -> np.ndarray:
        return values - np.polyval(np.polyfit(ranks[2], values, 1), ranks[2])

    return float(np.corrcoef(residual(ranks[0]), residual(ranks[1]))[0, 1])


def main(runs: list[Path]) -> None:
    dataset = validation_images(read_run(runs[0]))
    clutter = difficulty_of(dataset)["clutter"].to_numpy()
    images = torch.cat([batch for batch, _ in DataLoader(dataset, batch_size=500)])
    ink = images.mean((1, 2, 3)).numpy()
    table = load_table(runs[0] / "lut-res32.json")
    print(f"Validation images: {len(images)}; Spearman of clutter with ink {stats.spearmanr(clutter, ink).statistic:+.2f}."
          " Per snapshot, Spearman of an image's LUT latency with:\n")
    print("| run | epoch | clutter | ink | clutter, ink taken out |")
    print("|---|---|---|---|---|")
    for run in runs:
        for epoch, archs in snapshot_policies(run, images):
            ms = table.estimate(archs, mode=table.default_mode)
            if np.ptp(ms) == 0:
                print(f"| {run.name} | {epoch} | — | — | — (one architecture) |")
                continue
            print(f"| {run.name} | {epoch} | {stats.spearmanr(ms, clutter).statistic:+.2f} | "
                  f"{stats.spearmanr(ms, ink).statistic:+.2f} | {partial_spearman(ms, clutter, ink):+.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders with search snapshots")
    main(parser.parse_args().runs)

"""One-shot NAS (Bender et al., ICML 2018; single-path one-shot, Guo et al. 2019): score sampled architectures with
the pre-trained meta-graph's shared weights, keep the accuracy–LUT-latency Pareto frontier.

As those papers do, each child is scored with batch-norm statistics re-estimated for it on a fixed set of training
images (:mod:`instanas.batchnorm`): the meta-graph's own statistics average over every child it was trained on, and
score most children near chance. Children are drawn from cheap to rich (a keep probability per child, as
``correlate`` draws them), so the frontier can reach the cheap end. Scores are taken on the run's held-out training
images (``--holdout``), never on the validation split: the frontier is chosen there and only its points are then
evaluated on validation. Each child's accuracy with the shared statistics is kept beside, as the ablation.

Scores are journaled one architecture per row, so an interrupted search resumes where it stopped. ``retrain`` trains a
frontier architecture from scratch with the re-training recipe.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from instanas.batchnorm import recalibrated
from instanas.journal import CsvJournal
from instanas.metagraph import MetaGraph, fixed_selection
from instanas.progress import progress_bar
from instanas.space import correlation_sample, format_architecture
from instanas.training.loop import Trainer
from instanas.training.stages import Retrain

COLUMNS = ["index", "arch", "keep", "accuracy", "accuracy_shared_bn", "lut_ms", "wall_s"]
BN_BATCHES = 4  # batches of 64 training images that re-estimate a child's batch-norm statistics


def accuracy(network: nn.Module, batches: list[tuple[Tensor, Tensor]]) -> float:
    """Share of ``batches``' images a static network classifies right (eval mode)."""
    network.eval()
    with torch.no_grad():
        correct = sum(int((network(images).argmax(1) == labels).sum()) for images, labels in batches)
    return correct / sum(len(labels) for _, labels in batches)


def score_architectures(metagraph: MetaGraph, bn_images: list[Tensor], batches: list[tuple[Tensor, Tensor]], table, *,
                        samples: int, seed: int, journal_path: Path, resume: bool,
                        show_progress: bool = True) -> pd.DataFrame:
    """Accuracy on ``batches`` (the held-out images; recalibrated, and with the shared statistics) and LUT latency of
    ``samples`` children drawn from cheap to rich; one journal row each."""
    archs, keeps = correlation_sample(samples, seed)
    settings = {"samples": samples, "seed": seed, "lut": table.content_hash, "mode": table.default_mode,
                "bn_images": sum(len(images) for images in bn_images),
                "scored_images": sum(len(labels) for _, labels in batches)}
    metagraph.eval()
    with (CsvJournal(journal_path, COLUMNS, settings, journal_path.with_suffix(".settings.json"), resume) as journal,
          progress_bar(disable=not show_progress) as progress):
        done = set(journal.frame()["index"])
        task = progress.add_task("one-shot: scoring children", total=samples, completed=len(done), status="")
        for index in (i for i in range(samples) if i not in done):
            began = time.perf_counter()
            child = metagraph.child(archs[index])  # only the child's modules run, and only its statistics change
            shared = accuracy(child, batches)
            with recalibrated(child, bn_images):
                recalibrated_accuracy = accuracy(child, batches)
            journal.append({"index": index, "arch": format_architecture(archs[index]),
                            "keep": round(float(keeps[index]), 4), "accuracy": recalibrated_accuracy,
                            "accuracy_shared_bn": shared,
                            "lut_ms": float(table.estimate(archs[index], mode=table.default_mode)),
                            "wall_s": round(time.perf_counter() - began, 4)})
            progress.update(task, advance=1, status=f"last {100 * recalibrated_accuracy:.1f} % "
                                                    f"(shared statistics {100 * shared:.1f} %)")
        frame = journal.frame()
    return frame.sort_values("index").reset_index(drop=True)


def pareto_frontier(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows no other row beats on both accuracy and latency, fastest first."""
    ordered = frame.sort_values(["lut_ms", "accuracy"], ascending=[True, False])
    best_so_far = ordered["accuracy"].cummax().shift(fill_value=-np.inf)
    return ordered[ordered["accuracy"] > best_so_far].reset_index(drop=True)


class RetrainArchitecture(Retrain):
    """One architecture of the space trained from scratch as stage ``name`` (a frontier point's ``oneshot-<index>``,
    or ``smallest``), the re-training recipe and epochs."""

    def __init__(self, trainer: Trainer, resume: bool, name: str, arch: np.ndarray):
        self.name, self.arch = name, arch
        super().__init__(trainer, resume)

    def stage_settings(self) -> dict:
        return super().stage_settings() | {"arch": format_architecture(self.arch)}

    def choose(self, images: Tensor) -> Tensor:
        return fixed_selection(self.arch, len(images), images.device)

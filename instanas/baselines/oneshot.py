"""One-shot NAS (Bender et al., ICML 2018): score sampled architectures with the pre-trained meta-graph's shared weights.

Architectures are drawn uniformly from the space (every module kept with probability ½, as in the last epochs of
pre-training), each is scored on the validation split with the meta-graph of the run's ``pretrain`` stage, and the
accuracy–LUT-latency Pareto frontier is kept. Scores are journaled one architecture per row, so an interrupted
search resumes where it stopped. ``retrain`` trains a frontier architecture from scratch with the re-training recipe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from instanas.journal import CsvJournal
from instanas.metagraph import MetaGraph
from instanas.progress import progress_bar
from instanas.space import format_architecture, parse_architecture, sample_architectures
from instanas.train import Retrain, Trainer, _fixed

COLUMNS = ["index", "arch", "accuracy", "lut_ms"]


def score_architectures(metagraph: MetaGraph, batches: list[tuple[Tensor, Tensor]], table, *, samples: int, seed: int,
                        journal_path: Path, resume: bool, show_progress: bool = True) -> pd.DataFrame:
    """Validation accuracy and LUT latency of ``samples`` random architectures; one journal row each."""
    archs = sample_architectures(samples, keep=0.5, seed=seed)
    settings = {"samples": samples, "seed": seed, "lut": table.content_hash, "mode": table.default_mode}
    journal = CsvJournal(journal_path, COLUMNS, settings, journal_path.with_suffix(".settings.json"), resume)
    done = set(journal.frame()["index"])
    metagraph.eval()
    with progress_bar(disable=not show_progress) as progress:
        task = progress.add_task("one-shot: scoring architectures", total=samples, completed=len(done), status="")
        for index in (i for i in range(samples) if i not in done):
            correct = 0
            with torch.no_grad():
                for images, labels in batches:
                    correct += int((metagraph(images, _fixed(archs[index], len(images), images.device)).argmax(1) == labels).sum())
            accuracy = correct / sum(len(labels) for _, labels in batches)
            journal.append({"index": index, "arch": format_architecture(archs[index]), "accuracy": accuracy,
                            "lut_ms": float(table.estimate(archs[index], mode=table.default_mode))})
            progress.update(task, advance=1, status=f"last {100 * accuracy:.1f} %")
    frame = journal.frame()
    journal.close()
    return frame.sort_values("index").reset_index(drop=True)


def pareto_frontier(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows no other row beats on both accuracy and latency, fastest first."""
    ordered = frame.sort_values(["lut_ms", "accuracy"], ascending=[True, False])
    best_so_far = ordered["accuracy"].cummax().shift(fill_value=-np.inf)
    return ordered[ordered["accuracy"] > best_so_far].reset_index(drop=True)


class RetrainArchitecture(Retrain):
    """One frontier architecture trained from scratch (``oneshot-<index>``), the re-training recipe and epochs."""

    def __init__(self, trainer: Trainer, resume: bool, index: int, arch: str):
        self.name, self.arch = f"oneshot-{index}", parse_architecture(arch)
        super().__init__(trainer, resume)

    def stage_settings(self) -> dict:
        return self.config.stage_settings("mobilenetv2") | {"arch": format_architecture(self.arch)}

    def choose(self, images: Tensor) -> Tensor:
        return _fixed(self.arch, len(images), images.device)

"""Is the clutter a real difficulty? Train one fixed architecture alone with the re-training recipe (the one every
re-trained network of `instanas compare` gets) and score it per clutter bucket on the validation split.

    python docs/results/cluttered-digits/difficulty.py RUN --arch smallest --epochs 8 [--dataset cluttered-digits]
    python docs/results/cluttered-digits/difficulty.py --table RUN_A RUN_B …   # the markdown table of finished runs

``--digit-side LOW HIGH`` / ``--max-fragments N`` try another protocol than the package's (how it was tuned); the
protocol used is recorded in the report.

Each run folder gets ``metrics-fixed-<arch>.csv`` (per epoch, resumable like any stage) and ``difficulty.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from instanas import cluttered
from instanas.atomic import atomic_write
from instanas.cluttered import by_clutter, protocol_of
from instanas.data import difficulty_of
from instanas.metagraph import fixed_selection
from instanas.space import format_architecture, mobilenetv2_architecture, smallest_architecture
from instanas.training.config import TrainConfig
from instanas.training.loop import Trainer
from instanas.training.runtime import Workers
from instanas.training.stages import Retrain

ARCHS = {"smallest": smallest_architecture, "mobilenetv2": mobilenetv2_architecture}


class FixedArchitecture(Retrain):
    """One architecture of the space for every image, trained from scratch with the re-training recipe."""

    def __init__(self, trainer: Trainer, resume: bool, label: str):
        self.name, self.arch = f"fixed-{label}", ARCHS[label]()
        super().__init__(trainer, resume)

    def stage_settings(self) -> dict:
        return super().stage_settings() | {"arch": format_architecture(self.arch)}

    def choose(self, images):
        return fixed_selection(self.arch, len(images), images.device)


def train_and_score(run: Path, label: str, epochs: int, dataset: str) -> dict:
    config = TrainConfig(dataset=dataset, finetune_epochs=epochs, workers=0)
    trainer = Trainer(config, run, Workers(device=torch.device("cpu")))
    stage = FixedArchitecture(trainer, resume=True, label=label)
    started = time.perf_counter()
    stage.run()
    network = stage.network.eval()
    correct = []
    with torch.no_grad():
        for images, labels in trainer.loader(trainer.val_set, 100, train=False):
            correct.append((network(images, stage.choose(images)).argmax(1) == labels).numpy())
    correct = np.concatenate(correct)
    clutter = difficulty_of(trainer.val_set)["clutter"].to_numpy()
    report = {"dataset": dataset, "protocol": asdict(protocol_of(dataset)), "arch": label, "epochs": epochs,
              "images": int(len(correct)),
              "accuracy": float(correct.mean()), "wall_s_this_call": round(time.perf_counter() - started, 1),
              "by_clutter": by_clutter(clutter, protocol_of(dataset), correct, {})}
    atomic_write(run / "difficulty.json", json.dumps(report, indent=2) + "\n")
    return report


def table(runs: list[Path]) -> str:
    """One row per run; the clutter buckets are the light, medium and heavy thirds of each run's own protocol."""
    reports = [json.loads((run / "difficulty.json").read_text()) for run in runs]
    lines = ["| architecture | data set | digit side (px) | fragments | epochs | accuracy | light clutter | "
             "medium clutter | heavy clutter |", "|---" * 9 + "|"]
    for report in reports:
        protocol = report["protocol"]
        sides = "–".join(str(side) for side in protocol["digit_side"])
        cells = " | ".join(f"{100 * row['accuracy']:.1f} % ({row['clutter']}: {row['images']})"
                           for row in report["by_clutter"])
        lines.append(f"| {report['arch']} | {report['dataset']} | {sides} | 0–{protocol['max_fragments']} | "
                     f"{report['epochs']} | {100 * report['accuracy']:.1f} % | {cells} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--arch", choices=sorted(ARCHS))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--dataset", default="cluttered-digits")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--digit-side", type=int, nargs=2)
    parser.add_argument("--max-fragments", type=int)
    arguments = parser.parse_args()
    changes = {key: value for key, value in (("digit_side", tuple(arguments.digit_side or ())),
                                            ("max_fragments", arguments.max_fragments)) if value}
    cluttered.PROTOCOLS[arguments.dataset] = replace(cluttered.PROTOCOLS[arguments.dataset], **changes)
    if arguments.table:
        missing = [str(run) for run in arguments.runs if not (run / "difficulty.json").is_file()]
        if missing:
            parser.error(f"{missing[0]}: no difficulty.json (train and score it first)")
        print(table(arguments.runs), end="")
        return
    if not arguments.arch or len(arguments.runs) != 1:
        parser.error("training needs one run folder and --arch")
    torch.set_num_threads(arguments.threads)
    (run,) = arguments.runs
    print(json.dumps(train_and_score(run, arguments.arch, arguments.epochs, arguments.dataset), indent=2))


if __name__ == "__main__":
    main()

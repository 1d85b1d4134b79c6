"""How well a pre-trained meta-graph's random children classify, by how many modules they keep (issue 33).

Pre-training's own validation draws children at the drop rate its epoch ended at, so two recipes that end at other
rates cannot be compared by it. This script puts every run's ``pretrain.pt`` on one scale: validation accuracy of
children that keep each module with probability 1.0 (the whole meta-graph), 0.75, 0.5 (what the search draws from an
undecided controller, p = 0.5) and 0.25, each image its own child, with the batch-norm statistics the meta-graph
was trained with ("as trained") and recalibrated on 640 training images for children drawn the same way. It also
tabulates each run's ``metrics-pretrain.csv`` (the epoch's own drop rate).

    python docs/results/pretraining-cluttered/keep_sweep.py OUT RUN [RUN ...]

writes ``OUT/sweep.csv``, ``OUT/sweep.md``, ``OUT/epochs.md`` and ``OUT/sweep.png``; a run is named by its folder.
A run already in ``OUT/sweep.csv`` is not swept again (delete the file to start over), so runs can be added one at
a time by naming them all again.
"""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from instanas.plots import png_figure
from instanas.training.checkpoints import RUN_KEYS, load_checkpoint, read_run
from instanas.training.config import TrainConfig
from instanas.training.loop import Trainer
from instanas.training.runtime import Workers
from instanas.training.stages import Pretrain

KEEPS = (1.0, 0.75, 0.5, 0.25)


def random_children(keep: float, seed: int):
    """A chooser that gives every image its own child, each module kept with probability ``keep`` (seeded): the
    children pre-training draws at drop rate 1 − ``keep``."""
    rng = np.random.default_rng(seed)
    return lambda images: Pretrain.children(len(images), 1 - keep, rng, images.device)


def sweep(run: Path) -> list[dict]:
    saved = read_run(run)
    config = TrainConfig(workers=0, **{key: saved[key] for key in RUN_KEYS})
    trainer = Trainer(config, run, Workers(), show_progress=False, tensorboard=False)
    metagraph = trainer.new_metagraph()
    metagraph.load_state_dict(load_checkpoint(run / "pretrain.pt")["metagraph"])
    rows = []
    for keep in KEEPS:
        row = {"run": run.name, "keep": keep}
        for label, recalibrate in (("as_trained", False), ("recalibrated", True)):
            # the same children for both: one seed per keep probability
            result = trainer.evaluate(metagraph, random_children(keep, int(100 * keep)), recalibrate=recalibrate)
            row[f"accuracy_{label}"] = result["val_accuracy"]
        rows.append(row)
        print(row, flush=True)
    return rows


def epochs_markdown(runs: list[Path]) -> str:
    lines = ["| run | epoch | drop rate | random children (the epoch's rate) | epoch (s) |", "|---|---|---|---|---|"]
    for run in runs:
        for row in pd.read_csv(run / "metrics-pretrain.csv").itertuples():
            lines.append(f"| {run.name} | {row.epoch} | {row.drop_path:.2f} | {100 * row.val_accuracy:.1f} % | "
                         f"{row.epoch_s:.0f} |")
    return "\n".join(lines) + "\n"


def sweep_markdown(frame: pd.DataFrame) -> str:
    lines = ["| run | " + " | ".join(f"keep {keep:g}" for keep in KEEPS) + " |", "|---|" + "---|" * len(KEEPS)]
    for run, group in frame.groupby("run", sort=False):
        cells = [f"{100 * row.accuracy_recalibrated:.1f} % ({100 * row.accuracy_as_trained:.1f} %)"
                 for row in group.itertuples()]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return ("Validation accuracy of random children, batch norm recalibrated (as trained):\n\n"
            + "\n".join(lines) + "\n")


def plot(frame: pd.DataFrame, path: Path) -> None:
    with png_figure(path, (6, 4)) as axes:
        for index, (run, group) in enumerate(frame.groupby("run", sort=False)):
            axes.plot(group["keep"], 100 * group["accuracy_recalibrated"], marker="o", color=f"C{index}", label=run)
            axes.plot(group["keep"], 100 * group["accuracy_as_trained"], marker="x", linestyle="--",
                      color=f"C{index}", label=f"{run} (BN as trained)")
        axes.axhline(10, color="0.5", linestyle=":", label="chance")
        axes.set_xlabel("keep probability of every module (1.0: the whole meta-graph)")
        axes.set_ylabel("validation accuracy (%)")
        axes.set_title("random children after pre-training", fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)


if __name__ == "__main__":
    out, runs = Path(sys.argv[1]), [Path(run) for run in sys.argv[2:]]
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    earlier = pd.read_csv(out / "sweep.csv") if (out / "sweep.csv").exists() else pd.DataFrame(columns=["run"])
    new = [row for run in runs if run.name not in set(earlier["run"]) for row in sweep(run)]
    frame = pd.concat([earlier[earlier["run"].isin([run.name for run in runs])], pd.DataFrame(new)],
                      ignore_index=True)
    frame.to_csv(out / "sweep.csv", index=False)
    (out / "sweep.md").write_text(sweep_markdown(frame))
    (out / "epochs.md").write_text(epochs_markdown(runs))
    plot(frame, out / "sweep.png")

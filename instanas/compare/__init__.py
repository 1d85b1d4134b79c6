"""``instanas compare``: InstaNAS against its baselines on one data set and one LUT (paper Table 1/2, Figure 6).

Everything runs inside a training run folder, on its data split: each baseline is a resumable stage there
(``mobilenetv2-0.4x.pt``, ``blockdrop.pt``, …; a finished one is loaded, not trained again), the one-shot scores are
journaled, and each method's evaluated points are kept in ``<out>/points-<method>.csv`` until its checkpoints change.

Every method reports accuracy and per-image latency the same way: the LUT estimate (the table's entries for what the
image's network executes, plus what runs besides: InstaNAS's controller from its LUT entry, BlockDrop's policy network
— the controller's body — from the same entry, ConvNet-AIG's gates timed here with the profiling harness), and the
measured batch-1 latency of the most frequent networks (paired with the reference network, in the LUT's units). Widths
other than 1.0× are outside the space: their "LUT estimate" is the sum of their own parts, timed here the same way.

Its parts, one concern each: :mod:`.methods` trains or loads every method and caches its points, :mod:`.points` scores
a point the same way for every method, :mod:`.reports` writes the tables and the frontier plot.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from instanas.atomic import atomic_write
from instanas.baselines.settings import CompareOptions
from instanas.compare.methods import Comparison
from instanas.compare.reports import buckets_markdown, frontier_plot, markdown_table
from instanas.training.checkpoints import RUN_KEYS, load_checkpoint, read_run
from instanas.training.config import TrainConfig

__all__ = ["Comparison", "compare", "comparison_config", "markdown_table"]


def comparison_config(run_dir: Path, *, data_dir: str | None = None, workers: int = TrainConfig.workers,
                      device: str = "cpu", recipe: dict | None = None) -> TrainConfig:
    """What the baselines train with: the run's data and cells, and the re-training recipe (and warm start) its
    MobileNetV2 1.0× was trained with (``recipe``'s values that are not None override it)."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir)
    trained = {}
    if (run_dir / "mobilenetv2.pt").exists():
        trained = {key: value for key, value in load_checkpoint(run_dir / "mobilenetv2.pt")["settings"].items()
                   if key.startswith("finetune_") or key == "warm_start"}
    overrides = {key: value for key, value in (recipe or {}).items() if value is not None}
    return TrainConfig(**{key: saved[key] for key in RUN_KEYS}, data_dir=data_dir or saved["data_dir"],
                       resolution=saved["resolution"], workers=workers, device=device, **(trained | overrides))


def compare(run_dir: Path, config: TrainConfig, table, options: CompareOptions,
            out: Path | None = None) -> pd.DataFrame:
    """Train or load every method, evaluate it, write ``table.csv``, ``table.md`` and ``frontier.png`` in ``out``."""
    out = Path(out) if out else Path(run_dir) / "compare"
    comparison = Comparison(run_dir, config, table, options, out)
    frames, bucket_frames = zip(*(comparison.points(method) for method in options.methods))
    frame = pd.concat(frames, ignore_index=True)
    atomic_write(out / "table.csv", frame.to_csv(index=False))
    run = read_run(run_dir)
    atomic_write(out / "table.md", markdown_table(frame))
    if comparison.protocol:
        buckets = pd.concat(bucket_frames, ignore_index=True)
        atomic_write(out / "buckets.csv", buckets.to_csv(index=False))
        atomic_write(out / "buckets.md", buckets_markdown(frame, buckets))
    scores = pd.read_csv(out / "oneshot.csv") if "oneshot" in options.methods else None
    title = f"{run['dataset']} validation ({int(frame['images'].iloc[0])} images), {run['resolution']} px"
    frontier_plot(frame, scores, title, out / "frontier.png")
    return frame

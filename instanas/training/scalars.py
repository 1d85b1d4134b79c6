"""TensorBoard scalars beside the CSV metrics: ``<run>/tb/<stage>/``, one TensorBoard run per stage.

Every number of an epoch's metrics row is logged under its column name (``train_loss``, ``val_accuracy``,
``val_lut_ms``, the search's ``upper_ms`` U_t, …) at the epoch as step, so ``tensorboard --logdir <run>/tb`` shows each
stage's curves side by side. The CSV files stay the record; the events are a view of them, written after the epoch's
checkpoint so that a resumed stage never logs an epoch twice.
"""

from __future__ import annotations

import numbers
from pathlib import Path


class ScalarLog:
    """One SummaryWriter per stage under ``folder``, opened on the stage's first epoch."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._writers: dict = {}

    def epoch(self, stage: str, row: dict) -> None:
        """Log every number of ``row`` (but the epoch itself) for ``stage`` at step ``row["epoch"]``."""
        writer = self._writers.get(stage)
        if writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when logging

            writer = self._writers[stage] = SummaryWriter(str(self.folder / stage))
        for key, value in row.items():
            if key != "epoch" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                writer.add_scalar(key, float(value), row["epoch"])
        writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

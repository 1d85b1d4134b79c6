"""What a run folder holds between stages: checkpoints (written atomically), ``run.json`` (the data every stage
shares) and the search's controller snapshots."""


from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from instanas.atomic import atomic_write
from instanas.errors import CheckpointError
from instanas.training.config import TrainConfig


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable instanas checkpoint ({error.__class__.__name__})") from None



RUN_FILE = "run.json"
RUN_KEYS = ("dataset", "seed", "limit_train", "limit_val", "holdout", "cell_merge")  # TrainConfig's, per run
# what run folders written before a field existed were trained with
RUN_DEFAULTS = {"cell_merge": "sum", "holdout": 0.0}


def record_run(out: Path, config: TrainConfig, resolution: int) -> None:
    """Write (first stage) or check (later stages) what every stage of a run folder must share: its data."""
    values = asdict(config)
    # relative to the run folder, so that a run.json names no directory of the machine it was made on
    data_dir = os.path.relpath(config.data_dir, out) if config.data_dir else None
    run = {"data_dir": data_dir, "resolution": resolution} | {key: values[key] for key in RUN_KEYS}
    path = out / RUN_FILE
    if path.exists():
        saved = read_run(out)
        changed = [key for key in run if key != "data_dir" and saved.get(key, RUN_DEFAULTS.get(key)) != run[key]]
        if changed:
            raise CheckpointError(
                f"{path}: this run folder was trained with other data or cells ({', '.join(changed)})")
        return
    atomic_write(path, json.dumps(run, indent=2) + "\n")


def read_run(out: Path) -> dict:
    """A run folder's shared settings; ``data_dir`` as a path to open from here (stored relative to the folder)."""
    path = Path(out) / RUN_FILE
    try:
        run = RUN_DEFAULTS | json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{out}: not a training run folder (no {RUN_FILE})") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable ({error.__class__.__name__})") from None
    if run.get("data_dir"):  # an absolute path (run folders written before it was relative) stays as it is
        run["data_dir"] = os.path.normpath(Path(out) / run["data_dir"])
    return run


def snapshot_path(out: Path, epoch: int | None) -> Path:
    """A search snapshot: the given epoch's, or the newest."""
    folder = Path(out) / "snapshots"
    if epoch is not None:
        path = folder / f"epoch-{epoch:03d}.pt"
        if not path.exists():
            raise CheckpointError(f"{path}: no controller snapshot of search epoch {epoch}")
        return path
    found = sorted(folder.glob("epoch-*.pt"))
    if not found:
        raise CheckpointError(f"{folder}: no controller snapshots; run --stage search first")
    return found[-1]

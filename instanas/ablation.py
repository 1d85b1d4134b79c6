"""``instanas ablation``: several training runs side by side, one setting changed in each (issue 13's table).

Each run folder holds a search (``metrics-search.csv``) and, when it was re-trained, a ``finetune.pt`` (or, re-trained
by ``compare``, the last snapshot's ``finetune-epoch-NNN.pt``). Per run the table shows what differs from the first
run's settings, how well pre-training left randomly drawn children (their validation accuracy at its last and its best
epoch), where the search's greedy policy started and ended (LUT latency of its architectures, controller excluded, and
accuracy with the shared weights, batch-norm statistics recalibrated), whether its latency fell epoch after epoch
(Spearman of latency against epoch: −1 is a steady fall), and the re-trained policy against one MobileNetV2 1.0×
(``baseline``): accuracy, latency with the controller, their ratio, distinct architectures, and the Spearman
correlation of an image's latency with MobileNetV2's confidence in it and, on cluttered digits, with its clutter.
On cluttered digits every search snapshot's policy is also read against clutter (``snapshots.csv``, the plot's third
panel): one re-trained policy's Spearman is one draw, the snapshots show whether the sign holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch.utils.data import DataLoader

from instanas.atomic import atomic_write
from instanas.cluttered import bucket_label, clutter_bucket, protocol_of
from instanas.controller import deterministic_policy, saved_controller
from instanas.data import difficulty_of
from instanas.errors import CheckpointError
from instanas.evaluate import evaluate_run, latency_spearman, validation_images
from instanas.plots import png_figure
from instanas.training.checkpoints import load_checkpoint, read_run
from instanas.training.config import with_setting_defaults
from instanas.training.stages import Pretrain, Search


def settings_of(run: Path) -> dict:
    """The settings every stage of ``run`` was trained with, the re-training's included (``finetune.pt`` or
    ``compare``'s re-training of the last snapshot), one dict (a later stage's value wins)."""
    merged = {}
    for stage in (Pretrain, Search):
        path = run / f"{stage.name}.pt"
        if path.exists():
            merged |= with_setting_defaults(load_checkpoint(path)["settings"], stage.setting_keys)
    if retrained := retrained_policy(run, merged.get("search_epochs", 0)):
        merged |= load_checkpoint(retrained)["settings"]
    if not merged:
        raise CheckpointError(f"{run}: no pretrain.pt, search.pt or finetune.pt")
    return merged


def differences(settings: dict, reference: dict) -> str:
    """The settings both runs have (a run may lack a stage) whose values differ, as ``name value`` pairs."""
    changed = [f"{key} {settings[key]}" for key in sorted(set(settings) & set(reference))
               if key not in ("lut", "snapshot") and settings[key] != reference[key]]
    return ", ".join(changed) or "—"


def retrained_policy(run: Path, search_epochs: int) -> Path | None:
    """The run's re-trained policy: ``finetune.pt``, else ``compare``'s re-training of the last snapshot (from
    scratch, or fine-tuned from the search's weights: ``--instanas-from-search``)."""
    last = f"finetune-epoch-{search_epochs - 1:03d}"
    for path in (run / "finetune.pt", run / f"{last}.pt", run / f"{last}-from-search.pt"):
        if path.exists():
            return path
    return None


def pretraining_accuracy(run: Path) -> dict:
    """Randomly drawn children's validation accuracy at the end of pre-training and at its best epoch."""
    path = run / "metrics-pretrain.csv"
    if not path.exists():
        return {"pretrain_last_accuracy": np.nan, "pretrain_best_accuracy": np.nan}
    accuracy = pd.read_csv(path)["val_accuracy"]
    return {"pretrain_last_accuracy": accuracy.iloc[-1], "pretrain_best_accuracy": accuracy.max()}


def ablation_row(run: Path, reference: dict, table, baseline: Path, out: Path) -> dict:
    search = pd.read_csv(run / "metrics-search.csv")
    first, last = search.iloc[0], search.iloc[-1]
    trend = stats.spearmanr(search["epoch"], search["val_lut_ms"]).statistic if len(search) > 2 else np.nan
    row = {
        "run": run.name,
        "changed": differences(settings_of(run), reference),
        **pretraining_accuracy(run),
        "search_epochs": len(search),
        "greedy_first_ms": first["val_lut_ms"], "greedy_first_accuracy": first["val_accuracy"],
        "greedy_last_ms": last["val_lut_ms"], "greedy_last_accuracy": last["val_accuracy"],
        "latency_trend_spearman": trend,
        "last_distinct_architectures": last.get("val_distinct_architectures", np.nan),
    }
    if checkpoint := retrained_policy(run, len(search)):
        report = evaluate_run(run, table, checkpoint=checkpoint, measure=0, baseline=baseline, out=out / run.name)
        versus = report["mobilenetv2"]
        row |= {
            "retrained_accuracy": report["accuracy"], "retrained_ms": report["lut_ms"]["mean"],
            "mobilenetv2_accuracy": versus["accuracy"], "mobilenetv2_ms": versus["lut_ms"],
            "latency_ratio": versus["instanas_lut_ms_ratio"],
            "distinct_architectures": report["distinct_architectures"],
            "spearman_vs_mobilenetv2_confidence": versus["spearman_latency_vs_baseline_confidence"],
            "spearman_vs_clutter": report.get("spearman_latency_vs_clutter", np.nan),
        }
    return row


def snapshot_policies(run: Path, images: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
    """Each search snapshot of ``run``, in order: its epoch and the architecture its greedy policy gives each image."""
    resolution = read_run(run)["resolution"]
    for path in sorted((run / "snapshots").glob("epoch-*.pt")):
        snapshot = load_checkpoint(path)
        controller = saved_controller(snapshot, resolution).eval()
        with torch.no_grad():
            yield snapshot["epoch"], deterministic_policy(controller(images)).numpy().astype(bool)


def clutter_by_snapshot(run: Path, table) -> pd.DataFrame | None:
    """Per search snapshot of ``run``: its greedy policy's mean LUT latency (controller excluded) on the validation
    images, per clutter bucket, and the Spearman of an image's latency with its clutter (positive: more clutter, a
    richer network). None for data that is not cluttered digits."""
    settings = read_run(run)
    protocol = protocol_of(settings["dataset"])
    if protocol is None:
        return None
    dataset = validation_images(settings)
    clutter = difficulty_of(dataset)["clutter"].to_numpy()
    buckets = clutter_bucket(clutter, protocol)
    labels = [bucket_label(low, high) for low, high in protocol.buckets()]
    images = torch.cat([batch for batch, _ in DataLoader(dataset, batch_size=500)])
    rows = []
    for epoch, archs in snapshot_policies(run, images):
        lut_ms = table.estimate(archs, mode=table.default_mode)
        rows.append({"run": run.name, "epoch": epoch, "greedy_ms": float(lut_ms.mean()),
                     "spearman_vs_clutter": latency_spearman(lut_ms, clutter)}
                    | {f"ms_clutter_{label}": float(lut_ms[buckets == label].mean()) for label in labels})
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    def number(value, form: str) -> str:
        return "—" if value is None or pd.isna(value) else format(value, form)

    def percent(value) -> str:
        return number(None if value is None or pd.isna(value) else 100 * value, ".1f")

    cluttered = "spearman_vs_clutter" in frame and frame["spearman_vs_clutter"].notna().any()
    lines = ["| run | changed from the first | pre-training: random children, last (best) | "
             "search: greedy ms, accuracy (first → last epoch) | latency trend | re-trained: accuracy | "
             "ms (controller incl.) | / MobileNetV2 | architectures | Spearman vs MBV2 conf. |"
             + (" Spearman vs clutter |" if cluttered else ""),
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if cluttered else "")]
    for row in frame.to_dict("records"):
        search = (f"{row['greedy_first_ms']:.2f} ms, {100 * row['greedy_first_accuracy']:.1f} % → "
                  f"{row['greedy_last_ms']:.2f} ms, {100 * row['greedy_last_accuracy']:.1f} %")
        pretraining = f"{percent(row.get('pretrain_last_accuracy'))} % ({percent(row.get('pretrain_best_accuracy'))} %)"
        lines.append(
            f"| {row['run']} | {row['changed']} | {pretraining} | {search} | "
            f"{number(row['latency_trend_spearman'], '+.2f')} | {percent(row.get('retrained_accuracy'))} % | "
            f"{number(row.get('retrained_ms'), '.2f')} | "
            f"{number(row.get('latency_ratio'), '.3f')} | {number(row.get('distinct_architectures'), '.0f')} | "
            f"{number(row.get('spearman_vs_mobilenetv2_confidence'), '+.3f')} |"
            + (f" {number(row.get('spearman_vs_clutter'), '+.3f')} |" if cluttered else ""))
    return "\n".join(lines) + "\n"


def run_style(index: int) -> dict:
    """The ``index``-th run's line: ten colours, then the same colours dashed, then dotted."""
    return {"color": f"C{index % 10}", "linestyle": ("-", "--", ":")[index // 10 % 3], "marker": "os^"[index // 10 % 3]}


def trajectory_plot(runs: list[Path], path: Path, snapshots: pd.DataFrame | None = None) -> None:
    """Each run's greedy LUT latency and accuracy per search epoch, with the upper bound U_t; with ``snapshots``
    (:func:`clutter_by_snapshot`), a third panel: each snapshot's Spearman of latency with clutter."""
    panels = 2 if snapshots is None else 3
    with png_figure(path, (5.5 * panels, 4), ncols=panels) as axes:
        latency_axes, accuracy_axes = axes[:2]
        if snapshots is not None:
            clutter_axes = axes[2]
            for index, run in enumerate(runs):
                mine = snapshots[snapshots["run"] == run.name]
                clutter_axes.plot(mine["epoch"], mine["spearman_vs_clutter"], label=run.name, **run_style(index))
            clutter_axes.axhline(0, color="0.5", linewidth=0.8)
            clutter_axes.set_ylim(-1, 1)
            clutter_axes.set_xlabel("search epoch")
            clutter_axes.set_ylabel("Spearman (latency, clutter)")
            clutter_axes.set_title("more clutter, richer network? (> 0: yes)", fontsize=10)
            clutter_axes.xaxis.get_major_locator().set_params(integer=True)
            clutter_axes.grid(alpha=0.3)
        for index, run in enumerate(runs):
            search = pd.read_csv(run / "metrics-search.csv")
            latency_axes.plot(search["epoch"], search["val_lut_ms"], label=run.name, **run_style(index))
            accuracy_axes.plot(search["epoch"], 100 * search["val_accuracy"], label=run.name, **run_style(index))
        search = pd.read_csv(runs[0] / "metrics-search.csv")
        latency_axes.plot(search["epoch"], search["upper_ms"], color="0.5", linestyle="--", label="U_t")
        latency_axes.plot(search["epoch"], search["lower_ms"], color="0.5", linestyle=":", label="L")
        latency_axes.set_xlabel("search epoch")
        latency_axes.set_ylabel("LUT ms per image")
        latency_axes.set_title("greedy policy's latency (controller excluded)", fontsize=10)
        accuracy_axes.set_xlabel("search epoch")
        accuracy_axes.set_ylabel("validation accuracy (%)")
        accuracy_axes.set_title("greedy policy's accuracy (shared weights, BN recalibrated)", fontsize=10)
        for axes in (latency_axes, accuracy_axes):
            axes.xaxis.get_major_locator().set_params(integer=True)
            axes.grid(alpha=0.3)
        latency_axes.legend(fontsize=7)  # one legend: every panel draws each run alike


def ablation(runs: list[Path], table_for, baseline: Path, out: Path) -> pd.DataFrame:
    """Tabulate ``runs`` (the first is the reference), each priced by ``table_for(cell_merge)``; write
    ``ablation.csv``, ``ablation.md``, ``search.png``."""
    runs = [Path(run) for run in runs]
    for run in runs:
        if not (run / "metrics-search.csv").exists():
            raise CheckpointError(f"{run}: no metrics-search.csv (run `instanas train --stage search` first)")
    if not Path(baseline).exists():
        raise CheckpointError(f"{baseline}: no such MobileNetV2 checkpoint")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    reference = settings_of(runs[0])
    frame = pd.DataFrame([ablation_row(run, reference, table_for(read_run(run)["cell_merge"]), Path(baseline), out)
                          for run in runs])
    atomic_write(out / "ablation.csv", frame.to_csv(index=False))
    atomic_write(out / "ablation.md", markdown(frame))
    atomic_write(out / "settings.json", json.dumps({"reference": runs[0].name, "settings": reference}, indent=1) + "\n")
    snapshots = [clutter_by_snapshot(run, table_for(read_run(run)["cell_merge"])) for run in runs]
    snapshots = None if any(part is None for part in snapshots) else pd.concat(snapshots, ignore_index=True)
    if snapshots is not None:
        atomic_write(out / "snapshots.csv", snapshots.to_csv(index=False))
    trajectory_plot(runs, out / "search.png", snapshots)
    return frame

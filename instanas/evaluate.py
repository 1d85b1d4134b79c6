"""Evaluate a trained controller and meta-graph: accuracy, chosen architectures, per-image latency (paper Figure 1).

Every image's latency is its child's plus the controller's, both from the LUT and, for the most frequent
architectures, measured with the profiling harness (paired with the reference network, in the LUT's milliseconds).
The run's MobileNetV2 baseline (stage ``mobilenetv2``), when present, is evaluated on the same images: beside it,
the report says whether the controller gives cheaper architectures to the images the baseline finds easy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch.utils.data import DataLoader

from instanas.atomic import atomic_write, report_path
from instanas.cluttered import by_clutter, protocol_of
from instanas.controller import deterministic_policy, saved_controller
from instanas.data import dataset_info, difficulty_of, load_dataset, subset
from instanas.errors import CheckpointError, LUTError
from instanas.metagraph import MetaGraph, fixed_selection
from instanas.plots import png_figure
from instanas.space import format_architecture, mobilenetv2_architecture, parse_architecture
from instanas.training.checkpoints import load_checkpoint, read_run
from lut.validation import Stopwatch


def _predict(metagraph: MetaGraph, loader: DataLoader, choose) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per image: correct or not, softmax confidence in the true class, and the architecture ``choose`` gave it."""
    correct, confidence, archs = [], [], []
    metagraph.eval()
    with torch.no_grad():
        for images, labels in loader:
            selection = choose(images)
            probabilities = metagraph(images, selection).softmax(1)
            correct.append((probabilities.argmax(1) == labels).numpy())
            confidence.append(probabilities.gather(1, labels[:, None]).squeeze(1).numpy())
            archs.append(selection.cpu().numpy().astype(bool))
    return np.concatenate(correct), np.concatenate(confidence), np.concatenate(archs)


def histogram_plot(latency_ms: np.ndarray, baseline_ms: float | None, report: dict, path: Path) -> None:
    """Per-image latency histogram, with the MobileNetV2 baseline's latency as a line (like the paper's Figure 1)."""
    with png_figure(path, (7, 4)) as axes:
        axes.hist(latency_ms, bins=40, color="tab:blue", alpha=0.8, label="InstaNAS, per image (controller included)")
        if baseline_ms is not None:
            axes.axvline(baseline_ms, color="tab:red", linestyle="--", label=f"MobileNetV2 1.0× ({baseline_ms:.2f} ms)")
        axes.set_xlabel("latency (ms, LUT)")
        axes.set_ylabel("images")
        axes.set_title(f"{report['dataset']} validation, accuracy {100 * report['accuracy']:.1f} %, "
                       f"mean {report['lut_ms']['mean']:.2f} ± {report['lut_ms']['std']:.2f} ms")
        axes.legend()


def _spread(values: np.ndarray) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "p5_p50_p95": [float(v) for v in np.percentile(values, [5, 50, 95])]}


def latency_spearman(latency_ms: np.ndarray, difficulty: np.ndarray) -> float | None:
    """Spearman correlation of an image's latency with a measure of its difficulty: a baseline's confidence in it
    (negative: harder images get richer networks) or its clutter count (positive: the same); None when every image
    gets the same latency, where a rank correlation is undefined."""
    return float(stats.spearmanr(latency_ms, difficulty).statistic) if np.ptp(latency_ms) > 0 else None


def validation_images(run: dict, data_dir: str | None = None):
    """The validation images every evaluation of a run (``read_run``'s dict) scores: its split, limited as trained."""
    return subset(load_dataset(run["dataset"], data_dir or run["data_dir"], train=False, resolution=run["resolution"]),
                  run["limit_val"], run["seed"])


def evaluate_run(run_dir: Path, table, *, checkpoint: Path | None = None, data_dir: str | None = None,
                 measure: int, threads: int | None = None, min_run_time: float = 0.2,
                 out: Path | None = None, baseline: Path | None = None) -> dict:
    """Evaluate ``checkpoint`` (default: the run's ``finetune.pt``) on the run's validation split; write the report,
    ``architectures.csv`` and ``latency_histogram.png`` into ``out`` (default: ``<run>/evaluation``). The
    MobileNetV2 to compare with is ``baseline`` (default: the run's ``mobilenetv2.pt``, when there is one)."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    checkpoint = Path(checkpoint) if checkpoint else run_dir / "finetune.pt"
    state = load_checkpoint(checkpoint)
    if "controller" not in state:
        raise CheckpointError(f"{checkpoint}: holds no controller (use finetune.pt or a search snapshot)")
    if table.resolution != run["resolution"]:
        raise LUTError(f"{table.path}: profiled at {table.resolution} px, the run trains at {run['resolution']} px")
    table.check_merge(run["cell_merge"])
    folder = data_dir or run["data_dir"]
    info = dataset_info(run["dataset"], run["resolution"], folder)
    dataset = validation_images(run, folder)
    loader = DataLoader(dataset, batch_size=100)

    metagraph = MetaGraph(run["resolution"], info.num_classes, run["cell_merge"])
    metagraph.load_state_dict(state["metagraph"])
    controller = saved_controller(state, run["resolution"]).eval()
    correct, _, archs = _predict(metagraph, loader, lambda images: deterministic_policy(controller(images)))
    mode = table.default_mode
    controller_ms = table.controller_ms
    lut_ms = table.estimate(archs, mode=mode) + controller_ms

    names = np.array([format_architecture(arch) for arch in archs])
    counts = pd.Series(names).value_counts()
    frame = pd.DataFrame({"arch": counts.index, "images": counts.to_numpy()})
    frame["modules"] = [int(parse_architecture(text).sum()) for text in frame["arch"]]
    frame["lut_ms"] = table.estimate(np.stack([parse_architecture(text) for text in frame["arch"]]), mode=mode)
    report = {
        "dataset": run["dataset"],
        "resolution": run["resolution"],
        "checkpoint": report_path(checkpoint),
        "images": int(len(correct)),
        "accuracy": float(correct.mean()),
        "distinct_architectures": int(len(frame)),
        "modules_per_image": _spread(archs.reshape(len(archs), -1).sum(1)),
        "module_share_by_cell": archs.mean(0).round(4).tolist(),
        "lut_ms": _spread(lut_ms),
        "controller_lut_ms": controller_ms,
        "lut": {"path": report_path(table.path), "version": table.version, "mode": mode, "backend": table.backend},
    }
    baseline_ms = None
    if measure:
        networks = {text: metagraph.child(parse_architecture(text)) for text in frame["arch"][:measure]}
        networks["controller"] = controller
        networks["mobilenetv2"] = metagraph.child(mobilenetv2_architecture())
        measured_ms = Stopwatch(table, threads=threads, min_run_time=min_run_time).images(networks, run["resolution"])
        controller_measured = measured_ms.pop("controller")
        frame["measured_ms"] = frame["arch"].map(measured_ms) + controller_measured
        per_image = frame.set_index("arch")["measured_ms"].reindex(names).to_numpy()
        covered = ~np.isnan(per_image)
        report["measured_ms"] = _spread(per_image[covered]) | {
            "images_covered": float(covered.mean()),
            "architectures_measured": len(networks) - 2,
            "controller_ms": controller_measured,
            "mobilenetv2_ms": measured_ms["mobilenetv2"],
        }
    baseline_path = Path(baseline) if baseline else run_dir / "mobilenetv2.pt"
    if baseline or baseline_path.exists():
        network = MetaGraph(run["resolution"], info.num_classes, run["cell_merge"])
        network.load_state_dict(load_checkpoint(baseline_path)["metagraph"])
        base_correct, base_confidence, _ = _predict(
            network, loader, lambda images: fixed_selection(mobilenetv2_architecture(), len(images)))
        baseline_ms = float(table.estimate(mobilenetv2_architecture(), mode=mode))
        quartile = pd.qcut(base_confidence, 4, labels=False, duplicates="drop")
        report["mobilenetv2"] = {
            "checkpoint": report_path(baseline_path),
            "accuracy": float(base_correct.mean()),
            "lut_ms": baseline_ms,
            "instanas_lut_ms_ratio": float(lut_ms.mean() / baseline_ms),
            "instanas_lut_ms_by_baseline_confidence_quartile": [
                float(lut_ms[quartile == q].mean()) for q in sorted(set(quartile))
            ],
            "spearman_latency_vs_baseline_confidence": latency_spearman(lut_ms, base_confidence),
        }
    protocol = protocol_of(run["dataset"])
    if protocol:  # cluttered digits: per clutter bucket, and whether more clutter gets a richer network
        clutter = difficulty_of(dataset)["clutter"].to_numpy()
        latencies = {"lut_ms": lut_ms} | ({"measured_ms": per_image} if measure else {})
        report["by_clutter"] = by_clutter(clutter, protocol, correct, latencies)
        report["spearman_latency_vs_clutter"] = latency_spearman(lut_ms, clutter)
        if "mobilenetv2" in report:
            report["mobilenetv2"]["by_clutter"] = by_clutter(clutter, protocol, base_correct, {})
    out = Path(out) if out else run_dir / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "architectures.csv", frame.to_csv(index=False))
    histogram_plot(lut_ms, baseline_ms, report, out / "latency_histogram.png")
    atomic_write(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report

"""``instanas compare``: InstaNAS against its baselines on one data set and one LUT (paper Table 1/2, Figure 6).

Everything runs inside a training run folder, on its data split: each baseline is a resumable stage there
(``mobilenetv2-0.4x.pt``, ``blockdrop.pt``, …; a finished one is loaded, not trained again), the one-shot scores are
journaled, and each method's evaluated points are kept in ``<out>/points-<method>.csv`` until its checkpoints change.

Every method reports accuracy and per-image latency the same way: the LUT estimate (the table's entries for what the
image's network executes, plus what runs besides: InstaNAS's controller from its LUT entry, BlockDrop's policy network
— the controller's body — from the same entry, ConvNet-AIG's gates timed here with the profiling harness), and the
measured batch-1 latency of the most frequent networks (paired with the reference network, in the LUT's units). Widths
other than 1.0× are outside the space: their "LUT estimate" is the sum of their own parts, timed here the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from instanas.atomic import atomic_write
from instanas.baselines.backbone import DROPPABLE_CELLS
from instanas.baselines.blockdrop import BlockDropStage
from instanas.baselines.convnet_aig import ConvNetAIGStage
from instanas.baselines.mobilenetv2 import WidthBaseline
from instanas.baselines.oneshot import BN_BATCHES, RetrainArchitecture, pareto_frontier, score_architectures
from instanas.baselines.settings import CompareOptions, parse_epochs
from instanas.batchnorm import recalibrated
from instanas.cluttered import by_clutter, protocol_of
from instanas.controller import deterministic_policy
from instanas.data import difficulty_of
from instanas.errors import CheckpointError, InstaNASError
from instanas.evaluate import latency_spearman
from instanas.metagraph import MetaGraph, fixed_selection
from instanas.plots import png_figure
from instanas.space import format_architecture, mobilenetv2_architecture, parse_architecture
from instanas.training.checkpoints import RUN_KEYS, load_checkpoint, read_run, snapshot_path
from instanas.training.config import TrainConfig
from instanas.training.loop import Stage, Trainer
from instanas.training.runtime import Workers
from instanas.training.stages import Finetune, MobileNetV2Baseline
from lut.validation import Stopwatch

LABELS = {"mobilenetv2": "MobileNetV2", "oneshot": "One-shot", "oneshot-retrained": "One-shot (re-trained)",
          "blockdrop": "BlockDrop", "convnet-aig": "ConvNet-AIG", "instanas": "InstaNAS (re-trained)",
          "instanas-search": "InstaNAS (search, shared weights)"}
POINT_COLUMNS = ["method", "point", "accuracy", "error_pct", "lut_ms_mean", "lut_ms_std", "measured_ms_mean",
                 "measured_ms_std", "measured_images", "images", "frontier", "distinct_architectures",
                 "spearman_latency_vs_mobilenetv2_confidence", "spearman_latency_vs_clutter"]
BUCKET_COLUMNS = ["method", "point", "clutter", "images", "accuracy", "lut_ms_mean", "measured_ms_mean"]


class GateBank(nn.Module):
    """All of ConvNet-AIG's gates, each on a feature map of its cell's input shape: their cost per image."""

    def __init__(self, gates: nn.ModuleDict):
        super().__init__()
        self.gates = gates

    def forward(self, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        return [gate(x) for gate, x in zip(self.gates.values(), inputs)]


class Comparison:
    def __init__(self, run_dir: Path, config: TrainConfig, table, options: CompareOptions, out: Path):
        self.run_dir, self.config, self.table, self.options, self.out = Path(run_dir), config, table, options, Path(out)
        self.mode = table.default_mode
        self.trainer = Trainer(config, self.run_dir, Workers(device=torch.device(options.device)),
                               show_progress=options.show_progress, tensorboard=options.tensorboard)
        if table.resolution != self.trainer.resolution:
            raise InstaNASError(f"{table.path}: profiled at {table.resolution} px, the run trains at "
                                f"{self.trainer.resolution} px")
        self.resolution = self.trainer.resolution
        loader = self.trainer.loader(self.trainer.val_set, 100, train=False)
        self.batches = [(self.trainer.batch(images), labels.to(self.trainer.device)) for images, labels in loader]
        self._stopwatch: Stopwatch | None = None
        self._difficulty: np.ndarray | None = None
        # cluttered digits: each validation image's clutter count, to report every point per clutter bucket
        self.protocol = protocol_of(config.dataset)
        self.clutter = difficulty_of(self.trainer.val_set)["clutter"].to_numpy() if self.protocol else None
        self._buckets: list[dict] = []
        self.out.mkdir(parents=True, exist_ok=True)

    # -- timing -------------------------------------------------------------------------------------------------
    @property
    def stopwatch(self) -> Stopwatch:
        if self._stopwatch is None:
            self._stopwatch = Stopwatch(self.table, threads=self.options.threads,
                                        min_run_time=self.options.min_run_time)
        return self._stopwatch

    def _image(self) -> Tensor:
        return torch.randn(1, 3, self.resolution, self.resolution)

    def _time(self, module: nn.Module, example_input=None) -> float:
        return self.stopwatch(module.cpu(), self._image() if example_input is None else example_input)

    # -- one point ----------------------------------------------------------------------------------------------
    def _per_image(self, decide: Callable[[Tensor], tuple[Tensor, Tensor | None]]
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """Per validation image: right or not, and the architecture in the space it ran (None: a static network)."""
        correct, archs = [], []
        with torch.no_grad():
            for images, labels in self.batches:
                logits, selection = decide(images)
                correct.append((logits.argmax(1) == labels).cpu().numpy())
                if selection is not None:
                    archs.append(selection.cpu().numpy().astype(bool))
        return np.concatenate(correct), np.concatenate(archs) if archs else None

    @staticmethod
    def _statistics(metagraph: MetaGraph, choose: Callable[[Tensor], Tensor], images: list[Tensor] | None):
        """Batch-norm statistics re-estimated on ``images`` for what ``choose`` picks; without images, its own."""
        return recalibrated(metagraph, images, choose) if images else nullcontext()

    def mobilenetv2_confidence(self) -> np.ndarray:
        """Per validation image, the run's MobileNetV2 1.0×'s softmax confidence in the true class: how easy it is."""
        if self._difficulty is None:
            network = self._backbone().network.eval()
            confidence = []
            with torch.no_grad():
                for images, labels in self.batches:
                    logits = network(images, fixed_selection(mobilenetv2_architecture(), len(images), images.device))
                    confidence.append(logits.softmax(1).gather(1, labels[:, None]).squeeze(1).cpu().numpy())
            self._difficulty = np.concatenate(confidence)
        return self._difficulty

    def _dynamic_point(self, method: str, point: str, correct: np.ndarray, archs: np.ndarray, network_of: Callable,
                       lut_overhead_ms: float, overhead: tuple[nn.Module, object] | None,
                       frontier: bool = False) -> dict:
        """A point whose images run architectures of the space, plus ``overhead`` (what decides, once per image)."""
        lut_ms = self.table.estimate(archs, mode=self.mode) + lut_overhead_ms
        names = pd.Series([format_architecture(arch) for arch in archs])
        measured = np.full(len(archs), np.nan)
        if self.options.measure:
            overhead_ms = self._time(*overhead) if overhead else 0.0
            for name in names.value_counts().index[: self.options.measure]:
                measured[(names == name).to_numpy()] = self._time(network_of(parse_architecture(name))) + overhead_ms
        row = self._row(method, point, correct, lut_ms, measured, frontier)
        row["distinct_architectures"] = int(names.nunique())
        spearman = latency_spearman(lut_ms, self.mobilenetv2_confidence())
        row["spearman_latency_vs_mobilenetv2_confidence"] = np.nan if spearman is None else spearman
        return row

    def _fixed_point(self, method: str, point: str, metagraph: MetaGraph, arch: np.ndarray,
                     recalibrate: bool = False) -> dict:
        """One architecture of the space for every image, run by ``metagraph``'s weights (``recalibrate``: shared
        weights, with batch-norm statistics re-estimated for this architecture, as it was scored)."""
        choose = lambda images: fixed_selection(arch, len(images), images.device)  # noqa: E731
        decide = lambda images: (metagraph(images, choose(images)), None)  # noqa: E731
        with self._statistics(metagraph, choose, self.trainer.calibration_images(BN_BATCHES) if recalibrate else None):
            correct, _ = self._per_image(decide)
        archs = np.broadcast_to(arch, (len(correct), *arch.shape))
        return self._dynamic_point(method, point, correct, archs, metagraph.child, 0.0, None, frontier=True)

    def _row(self, method: str, point: str, correct: np.ndarray, lut_ms: np.ndarray, measured_ms: np.ndarray,
             frontier: bool) -> dict:
        covered = measured_ms[~np.isnan(measured_ms)]
        spearman = None
        if self.protocol:
            spearman = latency_spearman(lut_ms, self.clutter)
            self._buckets += [{"method": method, "point": point, **bucket} for bucket in
                              by_clutter(self.clutter, self.protocol, correct,
                                         {"lut_ms": lut_ms, "measured_ms": measured_ms})]
        return {
            "method": method, "point": point, "accuracy": float(correct.mean()),
            "error_pct": 100 * (1 - float(correct.mean())),
            "lut_ms_mean": float(np.mean(lut_ms)), "lut_ms_std": float(np.std(lut_ms)),
            "measured_ms_mean": float(covered.mean()) if len(covered) else np.nan,
            "measured_ms_std": float(covered.std()) if len(covered) else np.nan,
            "measured_images": int(len(covered)), "images": int(len(correct)), "frontier": frontier,
            "distinct_architectures": 1, "spearman_latency_vs_mobilenetv2_confidence": np.nan,
            "spearman_latency_vs_clutter": np.nan if spearman is None else spearman,
        }

    def _train(self, stage: Stage) -> Stage:
        stage.run()  # a finished stage has no epochs left
        return stage

    def _metagraph(self, state: dict, key: str = "metagraph") -> MetaGraph:
        metagraph = self.trainer.new_metagraph()
        metagraph.load_state_dict(state[key])
        return metagraph.eval()

    def _backbone(self) -> Stage:
        """The run's MobileNetV2 1.0× (``mobilenetv2`` stage): trained here if the run has none."""
        return self._train(MobileNetV2Baseline(self.trainer, resume=True))

    # -- methods ------------------------------------------------------------------------------------------------
    def mobilenetv2(self) -> list[dict]:
        rows = []
        for width in self.options.widths:
            if width == 1.0:
                rows.append(self._fixed_point("mobilenetv2", "1.0×", self._backbone().network.eval(),
                                              mobilenetv2_architecture()))
                continue
            network = self._train(WidthBaseline(self.trainer, resume=True, width=width)).network.eval()
            correct, _ = self._per_image(lambda images, network=network: (network(images), None))
            stem, *cells, head = (self._time(part, torch.randn(1, channels, size, size))
                                  for part, (channels, size) in network.parts())
            # its parts summed as the table sums its entries, with the table's calibration in calibrated mode
            parts_ms = float(self.table.calibrated(stem + head, np.array([cells]), np.zeros(1), np.array([len(cells)]),
                                                   mode=self.mode)[0])
            measured = self._time(network) if self.options.measure else np.nan
            rows.append(self._row("mobilenetv2", f"{width:g}×", correct, np.full(len(correct), parts_ms),
                                  np.full(len(correct), measured), frontier=True))
        return rows

    def oneshot(self) -> list[dict]:
        """Children scored on the held-out training images, the frontier chosen there, its points evaluated on the
        validation split; with ``retrain``, up to ``oneshot_retrain_points`` of them (spread over latency) also
        re-trained."""
        metagraph = self._metagraph(load_checkpoint(self._needs("pretrain.pt", "instanas train --stage pretrain")))
        if self.trainer.holdout_set is None:
            raise CheckpointError(f"{self.run_dir}: no held-out training images (trained with --holdout 0, or before "
                                  "it existed); one-shot chooses its frontier on them: train a run with --holdout > 0")
        device = self.trainer.device
        holdout = [(self.trainer.batch(images), labels.to(device))
                   for images, labels in self.trainer.loader(self.trainer.holdout_set, 500, train=False)]
        scores = score_architectures(metagraph, self.trainer.calibration_images(BN_BATCHES), holdout, self.table,
                                     samples=self.options.oneshot_samples, seed=self.config.seed,
                                     journal_path=self.out / "oneshot.csv", resume=True,
                                     show_progress=self.options.show_progress)
        frontier = pareto_frontier(scores)
        spread = np.linspace(0, len(frontier) - 1, self.options.oneshot_retrain_points)
        retrained = set(spread.round().astype(int).tolist())
        rows = []
        for position, item in enumerate(frontier.itertuples()):
            arch = parse_architecture(item.arch)
            rows.append(self._fixed_point("oneshot", f"#{item.index}", metagraph, arch, recalibrate=True))
            if self.options.retrain and position in retrained:
                stage = self._train(RetrainArchitecture(self.trainer, True, item.index, item.arch))
                rows.append(self._fixed_point("oneshot-retrained", f"#{item.index}", stage.network.eval(), arch))
        return rows

    def blockdrop(self) -> list[dict]:
        self._backbone()
        stage = self._train(BlockDropStage(self.trainer, True, self.table, self.options.blockdrop))
        stage.policy.eval()
        stage.backbone.eval()

        def decide(images: Tensor) -> tuple[Tensor, Tensor]:
            selection = stage.choose(images)
            return stage.backbone(images, selection), selection

        correct, archs = self._per_image(decide)
        return [self._dynamic_point("blockdrop", "policy p > 0.5", correct, archs, stage.backbone.child,
                                    self.table.controller_ms, (stage.policy, None))]

    def convnet_aig(self) -> list[dict]:
        self._backbone()
        stage = self._train(ConvNetAIGStage(self.trainer, True, self.options.convnet_aig))
        network = stage.network.eval()
        correct, archs = self._per_image(network.decide)
        gates = GateBank(network.gates)
        shapes = [network.backbone.space.cells[cell] for cell in DROPPABLE_CELLS]
        inputs = tuple(torch.randn(1, spec.in_channels, spec.input_hw, spec.input_hw) for spec in shapes)
        gates_ms = self._time(gates, inputs)  # not in the LUT: timed here, the LUT's way
        return [self._dynamic_point("convnet-aig", f"target {self.options.convnet_aig.target:g}", correct, archs,
                                    network.backbone.child, gates_ms, (gates, inputs))]

    def _policy_point(self, method: str, point: str, state: dict, recalibrate: bool) -> dict:
        """A controller and meta-graph (a search snapshot's shared weights, or a re-trained network)."""
        metagraph, controller = self._metagraph(state), self.trainer.new_controller().eval()
        controller.load_state_dict(state["controller"])
        choose = lambda images: deterministic_policy(controller(images))  # noqa: E731

        def decide(images: Tensor) -> tuple[Tensor, Tensor]:
            selection = choose(images)
            return metagraph(images, selection), selection

        # shared weights: batch-norm statistics for the architectures this snapshot picks
        with self._statistics(metagraph, choose, self.trainer.calibration_images() if recalibrate else None):
            correct, archs = self._per_image(decide)
        return self._dynamic_point(method, point, correct, archs, metagraph.child, self.table.controller_ms,
                                   (controller, None), frontier=not recalibrate)

    def snapshot_epochs(self) -> list[int]:
        """The search epochs whose controllers are re-trained (``--retrain-snapshots``)."""
        epochs = sorted(int(path.stem.split("-")[1]) for path in (self.run_dir / "snapshots").glob("epoch-*.pt"))
        choice = self.options.retrain_snapshots
        if choice == "none":
            return []
        if choice == "all":
            return epochs
        if choice == "spread":  # five, evenly over the search, the first and the last included
            return sorted({epochs[round(i * (len(epochs) - 1) / 4)] for i in range(5)}) if epochs else []
        chosen = parse_epochs(choice)
        missing = sorted(set(chosen) - set(epochs))
        if missing:
            raise CheckpointError(f"{self.run_dir}: no search snapshot of epoch {missing[0]} to re-train")
        return chosen

    def _retrained(self, epoch: int) -> dict:
        """Search epoch ``epoch``'s controller with a meta-graph re-trained by the recipe: the run's ``finetune.pt``
        when that is this snapshot at this recipe, else its own stage ``finetune-epoch-NNN``."""
        stage = Finetune(self.trainer, True, epoch)
        own = self.run_dir / "finetune.pt"
        if not stage.resumed and own.exists():
            state = load_checkpoint(own)
            same = {key: value for key, value in state["settings"].items() if key != "snapshot"} == {
                key: value for key, value in stage.settings.items() if key != "snapshot"}
            if same and state["snapshot"] == stage.snapshot.name and state["epoch"] + 1 == stage.epochs:
                return state
        return self._train(stage).state()

    def instanas(self) -> list[dict]:
        snapshot_path(self.run_dir, None)  # a clear error if the search has not run
        rows = []
        for path in sorted((self.run_dir / "snapshots").glob("epoch-*.pt")):
            state = load_checkpoint(path)
            point = f"search epoch {state['epoch']}"
            rows.append(self._policy_point("instanas-search", point, state, recalibrate=True))
        for epoch in self.snapshot_epochs():
            rows.append(self._policy_point("instanas", f"epoch {epoch}, re-trained", self._retrained(epoch),
                                           recalibrate=False))
        return rows

    # -- orchestration ------------------------------------------------------------------------------------------
    def _needs(self, name: str, how: str) -> Path:
        path = self.run_dir / name
        if not path.exists():
            raise CheckpointError(f"{self.run_dir}: no {name}; run `{how}` first")
        return path

    def _inputs(self, method: str) -> str:
        """What a method's cached points depend on (its checkpoints by size and time, the options), as JSON text."""
        patterns = {"mobilenetv2": ["mobilenetv2*.pt"], "oneshot": ["pretrain.pt", "oneshot-*.pt"],
                    "blockdrop": ["blockdrop.pt"], "convnet-aig": ["convnet-aig.pt"],
                    "instanas": ["snapshots/epoch-*.pt", "finetune*.pt", "mobilenetv2.pt"]}[method]
        files = sorted(path for pattern in patterns for path in self.run_dir.glob(pattern))
        options = {key: value for key, value in asdict(self.options).items() if key not in ("methods", "show_progress")}
        key = {"files": {str(path.relative_to(self.run_dir)): [path.stat().st_size, path.stat().st_mtime_ns]
                         for path in files},
               "options": options, "lut": self.table.content_hash, "mode": self.mode,
               "settings": self.config.shared_settings()}
        return json.dumps(key, indent=1) + "\n"

    def points(self, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The method's points and, on cluttered digits, their figures per clutter bucket: trained or loaded,
        evaluated, cached in ``points-<method>.csv`` and ``buckets-<method>.csv``."""
        cached, key_path = self.out / f"points-{method}.csv", self.out / f"points-{method}.json"
        buckets_path = self.out / f"buckets-{method}.csv"
        if (cached.exists() and key_path.exists() and key_path.read_text() == self._inputs(method)
                and (buckets_path.exists() or not self.protocol)):
            return pd.read_csv(cached), pd.read_csv(buckets_path) if self.protocol else pd.DataFrame()
        self._buckets = []
        frame = pd.DataFrame(getattr(self, method.replace("-", "_"))(), columns=POINT_COLUMNS)
        buckets = pd.DataFrame(self._buckets, columns=BUCKET_COLUMNS)
        if self.protocol:
            atomic_write(buckets_path, buckets.to_csv(index=False))
        atomic_write(cached, frame.to_csv(index=False))
        atomic_write(key_path, self._inputs(method))
        return frame, buckets


def markdown_table(frame: pd.DataFrame) -> str:
    """The paper's Table 1 layout: method, error, latency mean ± std (LUT and measured); for dynamic methods the
    number of distinct architectures over the images and the Spearman correlation of an image's latency with the
    MobileNetV2 1.0×'s confidence in it (negative: harder images get richer networks)."""
    lines = ["| method | point | error (%) | latency, LUT (ms) | latency, measured (ms) | architectures | "
             "Spearman vs MobileNetV2 confidence |", "|---|---|---|---|---|---|---|"]
    for row in frame.itertuples():
        measured = "—" if np.isnan(row.measured_ms_mean) else f"{row.measured_ms_mean:.2f} ± {row.measured_ms_std:.2f}"
        spearman = row.spearman_latency_vs_mobilenetv2_confidence
        spearman = "—" if np.isnan(spearman) else f"{spearman:+.3f}"
        lines.append(f"| {LABELS[row.method]} | {row.point} | {row.error_pct:.1f} | "
                     f"{row.lut_ms_mean:.2f} ± {row.lut_ms_std:.2f} | {measured} | {row.distinct_architectures} | "
                     f"{spearman} |")
    return "\n".join(lines) + "\n"


def buckets_markdown(frame: pd.DataFrame, buckets: pd.DataFrame) -> str:
    """Per point, accuracy and mean LUT latency in each clutter bucket, and the Spearman correlation of an image's
    latency with its clutter count (dynamic methods; positive: more clutter, a richer network)."""
    names = list(dict.fromkeys(buckets["clutter"]))
    lines = ["| method | point | " + " | ".join(f"clutter {name}: accuracy, LUT ms" for name in names)
             + " | Spearman latency vs clutter |", "|---" * (3 + len(names)) + "|"]
    for row in frame.itertuples():
        group = buckets[(buckets["method"] == row.method) & (buckets["point"] == row.point)]
        cells = " | ".join(f"{100 * bucket.accuracy:.1f} %, {bucket.lut_ms_mean:.2f}" for bucket in group.itertuples())
        spearman = row.spearman_latency_vs_clutter
        lines.append(f"| {LABELS[row.method]} | {row.point} | {cells} | "
                     f"{'—' if np.isnan(spearman) else f'{spearman:+.3f}'} |")
    return "\n".join(lines) + "\n"


def frontier_plot(frame: pd.DataFrame, oneshot_scores: pd.DataFrame | None, title: str, path: Path) -> None:
    """Accuracy against mean LUT latency per image, every method (like the paper's Figure 6)."""
    with png_figure(path, (8, 5)) as axes:
        if oneshot_scores is not None and len(oneshot_scores):
            axes.scatter(oneshot_scores["lut_ms"], 100 * oneshot_scores["accuracy"], s=4, color="0.8",
                         label=f"One-shot, all {len(oneshot_scores)} sampled (held-out training images)")
        styles = {"mobilenetv2": ("tab:red", "s"), "oneshot": ("tab:gray", "o"), "oneshot-retrained": ("black", "o"),
                  "blockdrop": ("tab:green", "^"), "convnet-aig": ("tab:purple", "v"), "instanas": ("tab:blue", "*"),
                  "instanas-search": ("tab:cyan", ".")}
        for method, group in frame.groupby("method", sort=False):
            color, marker = styles[method]
            line = group[group["frontier"]].sort_values("lut_ms_mean")
            if len(line) > 1:
                axes.plot(line["lut_ms_mean"], 100 * line["accuracy"], color=color, alpha=0.6)
            axes.errorbar(group["lut_ms_mean"], 100 * group["accuracy"], xerr=group["lut_ms_std"], fmt=marker,
                          color=color, markersize=8 if method == "instanas" else 6, capsize=2, label=LABELS[method])
            if method == "instanas-search":  # the search's trajectory, epoch by epoch
                axes.plot(group["lut_ms_mean"], 100 * group["accuracy"], color=color, alpha=0.4, linestyle=":")
            for index, row in enumerate(group.itertuples()):
                if method in ("mobilenetv2", "instanas", "instanas-search"):  # widths; search epochs
                    label = row.point.split(",")[0].removeprefix("search epoch ")
                    axes.annotate(label, (row.lut_ms_mean, 100 * row.accuracy), textcoords="offset points",
                                  xytext=(4, 4 if index % 2 == 0 else -10), fontsize=6 if label.isdigit() else 8)
        axes.set_xlabel("latency per image (ms, LUT; bars: ± std over images)")
        axes.set_ylabel("accuracy (%)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)


def comparison_config(run_dir: Path, *, data_dir: str | None = None, workers: int = TrainConfig.workers,
                      device: str = "cpu", recipe: dict | None = None) -> TrainConfig:
    """What the baselines train with: the run's data and cells, and the re-training recipe its MobileNetV2 1.0× was
    trained with (``recipe``'s values that are not None override it)."""
    run_dir = Path(run_dir)
    saved = read_run(run_dir)
    trained = {}
    if (run_dir / "mobilenetv2.pt").exists():
        trained = {key: value for key, value in load_checkpoint(run_dir / "mobilenetv2.pt")["settings"].items()
                   if key.startswith("finetune_")}
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

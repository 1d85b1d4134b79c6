"""Training (or loading) each method of ``instanas compare`` in the run folder and turning it into points: the
MobileNetV2 widths, the space's smallest architecture, one-shot (scored children and re-trained frontier points),
BlockDrop, ConvNet-AIG, and InstaNAS's search snapshots and re-trained controllers. Each method's points are cached
until its checkpoints change."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, replace
from functools import cached_property
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
from instanas.baselines.references import ReferenceBaseline, shufflenet_name
from instanas.baselines.settings import CompareOptions, parse_epochs
from instanas.compare.points import BUCKET_COLUMNS, POINT_COLUMNS, PointScorer
from instanas.controller import deterministic_policy, saved_controller
from instanas.errors import CheckpointError, InstaNASError
from instanas.metagraph import MetaGraph
from instanas.space import mobilenetv2_architecture, parse_architecture, smallest_architecture
from instanas.training.checkpoints import load_checkpoint, snapshot_path
from instanas.training.config import TrainConfig
from instanas.training.loop import Stage, Trainer
from instanas.training.runtime import Workers
from instanas.training.stages import Finetune, MobileNetV2Baseline


class GateBank(nn.Module):
    """All of ConvNet-AIG's gates, each on a feature map of its cell's input shape: their cost per image."""

    def __init__(self, gates: nn.ModuleDict):
        super().__init__()
        self.gates = gates

    def forward(self, inputs: tuple[Tensor, ...]) -> list[Tensor]:
        return [gate(x) for gate, x in zip(self.gates.values(), inputs)]


class Comparison:
    """The methods of one run folder, each trained or loaded there and scored by one :class:`PointScorer`."""

    def __init__(self, run_dir: Path, config: TrainConfig, table, options: CompareOptions, out: Path):
        self.run_dir, self.config, self.table, self.options, self.out = Path(run_dir), config, table, options, Path(out)
        self.trainer = Trainer(config, self.run_dir, Workers(device=torch.device(options.device)),
                               show_progress=options.show_progress, tensorboard=options.tensorboard)
        if table.resolution != self.trainer.resolution:
            raise InstaNASError(f"{table.path}: profiled at {table.resolution} px, the run trains at "
                                f"{self.trainer.resolution} px")
        self.scorer = PointScorer(self.trainer, table, options, config.dataset,
                                  lambda: self._backbone().network.eval())
        self.protocol = self.scorer.protocol
        self.out.mkdir(parents=True, exist_ok=True)

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
                rows.append(self.scorer.fixed_point("mobilenetv2", "1.0×", self._backbone().network.eval(),
                                              mobilenetv2_architecture()))
                continue
            network = self._train(WidthBaseline(self.trainer, resume=True, width=width)).network.eval()
            stem, *cells, head = (self.scorer.time(part, torch.randn(1, channels, size, size))
                                  for part, (channels, size) in network.parts())
            # its parts summed as the table sums its entries, with the table's calibration in calibrated mode
            parts_ms = float(self.table.calibrated(stem + head, np.array([cells]), np.zeros(1), np.array([len(cells)]),
                                                   mode=self.scorer.mode)[0])
            rows.append(self.scorer.static_point("mobilenetv2", f"{width:g}×", network, parts_ms))
        return rows

    def shufflenet_v2(self) -> list[dict]:
        """torchvision's ShuffleNet v2 at each ``--shufflenet-widths``: measured, no LUT estimate."""
        return [self._reference("shufflenet_v2", shufflenet_name(width), f"{width:g}×")
                for width in self.options.shufflenet_widths]

    def resnet(self) -> list[dict]:
        """torchvision's ResNet at each ``--resnet-depths``: measured, no LUT estimate."""
        return [self._reference("resnet", f"resnet{depth}", str(depth)) for depth in self.options.resnet_depths]

    def _reference(self, method: str, name: str, point: str) -> dict:
        network = self._train(ReferenceBaseline(self.trainer, resume=True, network=name)).network.eval()
        return self.scorer.static_point(method, point, network, np.nan)

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
            rows.append(self.scorer.fixed_point("oneshot", f"#{item.index}", metagraph, arch, recalibrate=True))
            if self.options.retrain and position in retrained:
                stage = self._train(RetrainArchitecture(self.trainer, True, f"oneshot-{item.index}", arch))
                rows.append(self.scorer.fixed_point("oneshot-retrained", f"#{item.index}", stage.network.eval(), arch))
        return rows

    def smallest(self) -> list[dict]:
        """The space's smallest architecture re-trained by the recipe: the floor that says how much capacity matters
        on the data (issue 33 asks it to stay at least 5 points below MobileNetV2 1.0×)."""
        arch = smallest_architecture()
        stage = self._train(RetrainArchitecture(self.trainer, True, "smallest", arch))
        return [self.scorer.fixed_point("smallest", "re-trained", stage.network.eval(), arch)]

    def blockdrop(self) -> list[dict]:
        self._backbone()
        stage = self._train(BlockDropStage(self.trainer, True, self.table, self.options.blockdrop))
        stage.policy.eval()
        stage.backbone.eval()

        def decide(images: Tensor) -> tuple[Tensor, Tensor]:
            selection = stage.choose(images)
            return stage.backbone(images, selection), selection

        correct, archs = self.scorer.per_image(decide)
        return [self.scorer.dynamic_point("blockdrop", "policy p > 0.5", correct, archs, stage.backbone.child,
                                    self.table.controller_ms, (stage.policy, None))]

    def convnet_aig(self) -> list[dict]:
        self._backbone()
        stage = self._train(ConvNetAIGStage(self.trainer, True, self.options.convnet_aig))
        network = stage.network.eval()
        correct, archs = self.scorer.per_image(network.decide)
        gates = GateBank(network.gates)
        shapes = [network.backbone.space.cells[cell] for cell in DROPPABLE_CELLS]
        inputs = tuple(torch.randn(1, spec.in_channels, spec.input_hw, spec.input_hw) for spec in shapes)
        gates_ms = self.scorer.time(gates, inputs)  # not in the LUT: timed here, the LUT's way
        return [self.scorer.dynamic_point("convnet-aig", f"target {self.options.convnet_aig.target:g}", correct, archs,
                                    network.backbone.child, gates_ms, (gates, inputs))]

    def _policy_point(self, method: str, point: str, state: dict, recalibrate: bool) -> dict:
        """A controller and meta-graph (a search snapshot's shared weights, or a re-trained network)."""
        metagraph = self._metagraph(state)
        controller = self.trainer.place(saved_controller(state, self.trainer.resolution)).eval()
        choose = lambda images: deterministic_policy(controller(images))  # noqa: E731

        def decide(images: Tensor) -> tuple[Tensor, Tensor]:
            selection = choose(images)
            return metagraph(images, selection), selection

        # shared weights: batch-norm statistics for the architectures this snapshot picks
        with self.scorer.statistics(metagraph, choose, self.trainer.calibration_images() if recalibrate else None):
            correct, archs = self.scorer.per_image(decide)
        return self.scorer.dynamic_point(method, point, correct, archs, metagraph.child, self.table.controller_ms,
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

    @cached_property
    def _instanas_trainer(self) -> Trainer:
        """The trainer of InstaNAS's re-trainings: the recipe's, or fine-tuning from the search's weights at
        ``--instanas-search-lr`` (same data and network, other settings)."""
        if not self.options.instanas_from_search:
            return self.trainer
        trainer = copy.copy(self.trainer)
        trainer.config = replace(self.config, from_scratch=False, finetune_lr=self.options.instanas_search_lr)
        return trainer

    def _retrained(self, epoch: int) -> dict:
        """Search epoch ``epoch``'s controller with a meta-graph re-trained by the recipe (or fine-tuned from the
        search's): the run's ``finetune.pt`` when that is this snapshot with these settings, else its own stage
        ``finetune-epoch-NNN`` (``…-from-search``)."""
        stage = Finetune(self._instanas_trainer, True, epoch)
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
            how = "fine-tuned from the search" if self.options.instanas_from_search else "re-trained"
            rows.append(self._policy_point("instanas", f"epoch {epoch}, {how}", self._retrained(epoch),
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
                    "smallest": ["smallest.pt"],
                    "blockdrop": ["blockdrop.pt"], "convnet-aig": ["convnet-aig.pt"],
                    "instanas": ["snapshots/epoch-*.pt", "finetune*.pt", "mobilenetv2.pt"],
                    "shufflenet_v2": ["shufflenet_v2_*.pt"], "resnet": ["resnet*.pt"]}[method]
        files = sorted(path for pattern in patterns for path in self.run_dir.glob(pattern))
        options = {key: value for key, value in asdict(self.options).items() if key not in ("methods", "show_progress")}
        key = {"files": {str(path.relative_to(self.run_dir)): [path.stat().st_size, path.stat().st_mtime_ns]
                         for path in files},
               "options": options, "lut": self.table.content_hash, "mode": self.scorer.mode,
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
        self.scorer.take_buckets()
        frame = pd.DataFrame(getattr(self, method.replace("-", "_"))(), columns=POINT_COLUMNS)
        buckets = pd.DataFrame(self.scorer.take_buckets(), columns=BUCKET_COLUMNS)
        if self.protocol:
            atomic_write(buckets_path, buckets.to_csv(index=False))
        atomic_write(cached, frame.to_csv(index=False))
        atomic_write(key_path, self._inputs(method))
        return frame, buckets

"""Scoring one point of ``instanas compare``: a method's networks on the validation images — accuracy, the LUT
estimate and the measured latency per image, distinct architectures, how latency follows difficulty, and on cluttered
digits the same per clutter bucket. Every method is scored by the same code, so the table compares like with like."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from instanas.baselines.oneshot import BN_BATCHES
from instanas.baselines.settings import CompareOptions
from instanas.batchnorm import recalibrated
from instanas.cluttered import by_clutter, protocol_of
from instanas.data import difficulty_of
from instanas.evaluate import latency_spearman
from instanas.metagraph import MetaGraph, fixed_selection
from instanas.space import format_architecture, mobilenetv2_architecture, parse_architecture
from instanas.training.loop import Trainer
from lut.validation import Stopwatch

POINT_COLUMNS = ["method", "point", "accuracy", "error_pct", "lut_ms_mean", "lut_ms_std", "measured_ms_mean",
                 "measured_ms_std", "measured_images", "images", "frontier", "distinct_architectures",
                 "spearman_latency_vs_mobilenetv2_confidence", "spearman_latency_vs_clutter"]
BUCKET_COLUMNS = ["method", "point", "clutter", "images", "accuracy", "lut_ms_mean", "measured_ms_mean"]


class PointScorer:
    """Scores points on ``trainer``'s validation split with ``table``; ``reference_network()`` gives the run's
    MobileNetV2 1.0× (a meta-graph), whose confidence in each image is its difficulty. Rows per clutter bucket
    gather in ``buckets`` until :meth:`take_buckets`."""

    def __init__(self, trainer: Trainer, table, options: CompareOptions, dataset: str,
                 reference_network: Callable[[], MetaGraph]):
        self.trainer, self.table, self.options = trainer, table, options
        self.mode = table.default_mode
        self.resolution = trainer.resolution
        self.reference_network = reference_network
        loader = trainer.loader(trainer.val_set, 100, train=False)
        self.batches = [(trainer.batch(images), labels.to(trainer.device)) for images, labels in loader]
        self._stopwatch: Stopwatch | None = None
        self._difficulty: np.ndarray | None = None
        # cluttered digits: each validation image's clutter count, to report every point per clutter bucket
        self.protocol = protocol_of(dataset)
        self.clutter = difficulty_of(trainer.val_set)["clutter"].to_numpy() if self.protocol else None
        self.buckets: list[dict] = []

    def take_buckets(self) -> list[dict]:
        buckets, self.buckets = self.buckets, []
        return buckets

    # -- timing -------------------------------------------------------------------------------------------------
    @property
    def stopwatch(self) -> Stopwatch:
        if self._stopwatch is None:
            self._stopwatch = Stopwatch(self.table, threads=self.options.threads,
                                        min_run_time=self.options.min_run_time)
        return self._stopwatch

    def image(self) -> Tensor:
        return torch.randn(1, 3, self.resolution, self.resolution)

    def time(self, module: nn.Module, example_input=None) -> float:
        return self.stopwatch(module.cpu(), self.image() if example_input is None else example_input)

    # -- one point ----------------------------------------------------------------------------------------------
    def per_image(self, decide: Callable[[Tensor], tuple[Tensor, Tensor | None]]
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
    def statistics(metagraph: MetaGraph, choose: Callable[[Tensor], Tensor], images: list[Tensor] | None):
        """Batch-norm statistics re-estimated on ``images`` for what ``choose`` picks; without images, its own."""
        return recalibrated(metagraph, images, choose) if images else nullcontext()

    def mobilenetv2_confidence(self) -> np.ndarray:
        """Per validation image, the run's MobileNetV2 1.0×'s softmax confidence in the true class: how easy it is."""
        if self._difficulty is None:
            network = self.reference_network()
            confidence = []
            with torch.no_grad():
                for images, labels in self.batches:
                    logits = network(images, fixed_selection(mobilenetv2_architecture(), len(images), images.device))
                    confidence.append(logits.softmax(1).gather(1, labels[:, None]).squeeze(1).cpu().numpy())
            self._difficulty = np.concatenate(confidence)
        return self._difficulty

    def dynamic_point(self, method: str, point: str, correct: np.ndarray, archs: np.ndarray, network_of: Callable,
                       lut_overhead_ms: float, overhead: tuple[nn.Module, object] | None,
                       frontier: bool = False) -> dict:
        """A point whose images run architectures of the space, plus ``overhead`` (what decides, once per image)."""
        lut_ms = self.table.estimate(archs, mode=self.mode) + lut_overhead_ms
        names = pd.Series([format_architecture(arch) for arch in archs])
        measured = np.full(len(archs), np.nan)
        if self.options.measure:
            overhead_ms = self.time(*overhead) if overhead else 0.0
            for name in names.value_counts().index[: self.options.measure]:
                measured[(names == name).to_numpy()] = self.time(network_of(parse_architecture(name))) + overhead_ms
        row = self.row(method, point, correct, lut_ms, measured, frontier)
        row["distinct_architectures"] = int(names.nunique())
        spearman = latency_spearman(lut_ms, self.mobilenetv2_confidence())
        row["spearman_latency_vs_mobilenetv2_confidence"] = np.nan if spearman is None else spearman
        return row

    def fixed_point(self, method: str, point: str, metagraph: MetaGraph, arch: np.ndarray,
                     recalibrate: bool = False) -> dict:
        """One architecture of the space for every image, run by ``metagraph``'s weights (``recalibrate``: shared
        weights, with batch-norm statistics re-estimated for this architecture, as it was scored)."""
        choose = lambda images: fixed_selection(arch, len(images), images.device)  # noqa: E731
        decide = lambda images: (metagraph(images, choose(images)), None)  # noqa: E731
        with self.statistics(metagraph, choose, self.trainer.calibration_images(BN_BATCHES) if recalibrate else None):
            correct, _ = self.per_image(decide)
        archs = np.broadcast_to(arch, (len(correct), *arch.shape))
        return self.dynamic_point(method, point, correct, archs, metagraph.child, 0.0, None, frontier=True)

    def static_point(self, method: str, point: str, network: nn.Module, lut_ms: float) -> dict:
        """A network outside the space, the same for every image: its LUT figure is ``lut_ms`` (NaN: none), and
        with ``--measure`` it is measured once."""
        correct, _ = self.per_image(lambda images: (network(images), None))
        measured = self.time(network) if self.options.measure else np.nan
        return self.row(method, point, correct, np.full(len(correct), lut_ms), np.full(len(correct), measured),
                        frontier=True)

    def row(self, method: str, point: str, correct: np.ndarray, lut_ms: np.ndarray, measured_ms: np.ndarray,
             frontier: bool) -> dict:
        covered = measured_ms[~np.isnan(measured_ms)]
        spearman = None
        if self.protocol:
            spearman = latency_spearman(lut_ms, self.clutter)
            self.buckets += [{"method": method, "point": point, **bucket} for bucket in
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

"""Training throughput: one step of each stage on the default path, beside the plain path in the same run.

The plain path is what PyTorch does by default with the paper's settings: fp32, contiguous activations, batch 32
everywhere. The default path is :class:`TrainConfig`'s defaults (channels-last activations; pre-training at its
default batch). Steps of the two alternate, so the speed-up in ``extra_info`` is a ratio the machine's changing speed
cannot fake; pytest-benchmark times the default path's step, which ``bench/check.py`` judges against the baseline
like every other benchmark. Each step is the stage's own (``Pretrain.step``, ``Search.controller_step`` and
``metagraph_step``, ``Retrain.step``) on real digits images.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from instanas.training.checkpoints import save_checkpoint
from instanas.training.config import TrainConfig
from instanas.training.loop import Trainer
from instanas.training.runtime import Workers
from instanas.training.stages import Finetune, MobileNetV2Baseline, Pretrain, Search
from lut.store import load_table
from profiler import torch_threads

THREADS = 2
PAIRS = 4  # alternating plain/default steps after one warm-up pair; the median of each side is compared
PLAIN = {"memory_format": "contiguous", "pretrain_batch": 32}
PRETRAIN_DROP_RATE = 0.25  # the shrinking schedule half-way through its drop-path phase: keep ~ U[0.5, 1]
SEARCH_LUT = Path(__file__).parents[1] / "docs/results/compare-digits/lut-res32.json"  # prices the search's rewards
MIN_PRETRAIN_SPEEDUP = 1.15  # measured 1.5–1.7× here; a path that lost channels-last runs at about 1.0×


class StageSteps:
    """One run folder's stages, each ready to take a step on a fixed batch of its own size."""

    def __init__(self, config: TrainConfig, out, table):
        self.trainer = trainer = Trainer(config, out, Workers(), show_progress=False, tensorboard=False)
        self.pretrain = Pretrain(trainer, resume=False)
        save_checkpoint(out / "pretrain.pt", self.pretrain.state())
        self.search = Search(trainer, resume=False, table=table)
        save_checkpoint(out / "search.pt", self.search.state())
        save_checkpoint(self.search.snapshots / "epoch-000.pt", self.search.state())
        self.finetune = Finetune(trainer, resume=False)
        self.mobilenetv2 = MobileNetV2Baseline(trainer, resume=False)

    def images(self, batch: int):
        loader = self.trainer.loader(self.trainer.train_set, batch, train=True)
        images, labels = next(iter(loader))
        return self.trainer.batch(images), labels

    def step(self, stage: str):
        """``stage``'s step as a call without arguments, and the images it trains on."""
        config = self.trainer.config
        if stage == "pretrain":
            images, labels = self.images(config.pretrain_batch)
            return lambda: self.pretrain.step(images, labels, PRETRAIN_DROP_RATE), len(images)
        if stage == "search":  # an epoch of search runs both passes over every batch
            images, labels = self.images(config.search_batch)
            return lambda: (self.search.controller_step(images, labels, 0),
                            self.search.metagraph_step(images, labels)), len(images)
        images, labels = self.images(config.finetune_batch)
        return lambda: getattr(self, stage).step(images, labels), len(images)


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    table = load_table(SEARCH_LUT)
    base = TrainConfig(dataset="digits", workers=0, limit_train=256, limit_val=64)
    with torch_threads(THREADS):
        torch.manual_seed(0)
        yield {name: StageSteps(config, tmp_path_factory.mktemp(name), table)
               for name, config in (("default", base), ("plain", dataclasses.replace(base, **PLAIN)))}


def _images_per_second(step, images: int) -> float:
    start = time.perf_counter()
    step()
    return images / (time.perf_counter() - start)


@pytest.mark.parametrize("stage", ["pretrain", "search", "finetune", "mobilenetv2"])
def test_training_step(benchmark, steps, stage):
    with torch_threads(THREADS):
        default, plain = steps["default"].step(stage), steps["plain"].step(stage)
        rates = {"default": [], "plain": []}
        for pair in range(PAIRS + 1):
            for name, (step, images) in (("plain", plain), ("default", default)):
                rate = _images_per_second(step, images)
                if pair:  # the first pair warms up oneDNN's kernels
                    rates[name].append(rate)
        default_rate, plain_rate = (float(np.median(rates[name])) for name in ("default", "plain"))
        benchmark.extra_info |= {"images_per_s": round(default_rate, 1), "plain_images_per_s": round(plain_rate, 1),
                                 "speedup": round(default_rate / plain_rate, 3), "batch": default[1],
                                 "plain_batch": plain[1]}
        benchmark.group = "training step"
        benchmark.pedantic(default[0], rounds=3, warmup_rounds=0)
    if stage == "pretrain":
        assert default_rate / plain_rate >= MIN_PRETRAIN_SPEEDUP, benchmark.extra_info

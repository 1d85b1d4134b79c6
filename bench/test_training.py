"""Training throughput: one step of each stage on the default path, beside the plain path in the same run.

The plain path is what PyTorch does by default with the paper's settings: fp32, contiguous activations, batch 32
everywhere, the optimizers' loop over parameter tensors. The default path is :class:`TrainConfig`'s defaults
(channels-last activations, batch 64, the optimizers' fused kernel). Steps of the
two alternate and the speed-up in ``extra_info`` is the median of each adjacent pair's ratio, so the machine's
changing speed cannot fake it; a pre-training speed-up short of the floor is measured again on more pairs before it
fails. The floor only catches a default path that lost its layout: the pre-training ratio read 1.13× on the CI
machine, 1.17× and 1.51× in two full bench runs on one quiet machine and 1.54× with this file alone, its default
steps erratic where the plain ones were steady — the default step's heap was still growing (:func:`settle`), so both
paths now settle before they are timed. pytest-benchmark's rounds are the default path's steps of those pairs (the
plain step runs as the round's untimed setup), judged by ``bench/check.py`` against the baseline like every other
benchmark. Each step is the stage's own (``Pretrain.step``, ``Search.controller_step`` and ``metagraph_step``,
``Retrain.step``) on real digits images.

Fine-tuning is timed on two policies. ``finetune``: the architectures a searched controller gives (the cluttered
comparison's last snapshot, ``searched-policy.json``: a few architectures shared by the batch, as fine-tuning runs);
``finetune-untrained``: an untrained controller's, nearly every image its own architecture, which no run fine-tunes
but which costs the most per module (every module runs on a gathered part of the batch).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from instanas.space import parse_architecture
from instanas.training.checkpoints import save_checkpoint
from instanas.training.config import TrainConfig
from instanas.training.loop import Trainer, supervised_step
from instanas.training.runtime import Workers
from instanas.training.stages import Finetune, MobileNetV2Baseline, Pretrain, Search
from lut.store import load_table
from profiler import torch_threads

THREADS = 2
PAIRS = 4  # alternating plain/default steps once both have settled; a pre-training shortfall adds twice as many
SETTLED_FAULTS = 10_000  # fresh pages (40 MB) a step may still touch once the process's heap has settled
MAX_SETTLING_STEPS = 10
PLAIN = {"memory_format": "contiguous", "pretrain_batch": 32, "finetune_batch": 32, "fused_optimizer": False}
PRETRAIN_DROP_RATE = 0.25  # the shrinking schedule half-way through its drop-path phase: keep ~ U[0.5, 1]
SEARCH_LUT = Path(__file__).parents[1] / "docs/results/compare-digits/lut-res32.json"  # prices the search's rewards
MIN_PRETRAIN_SPEEDUP = 1.05  # a path that lost channels-last runs at about 1.0×
SEARCHED_POLICY = Path(__file__).with_name("searched-policy.json")


def searched_selection(batch: int, seed: int = 0) -> torch.Tensor:
    """``batch`` architectures drawn from ``searched-policy.json`` as often as the searched controller gave each."""
    entries = json.loads(SEARCHED_POLICY.read_text())["architectures"]
    architectures = np.stack([parse_architecture(entry["arch"]) for entry in entries])
    counts = np.array([entry["images"] for entry in entries], dtype=float)
    picks = np.random.default_rng(seed).choice(len(architectures), size=batch, p=counts / counts.sum())
    return torch.as_tensor(architectures[picks])


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
            rng = np.random.default_rng(config.seed)
            return lambda: self.pretrain.step(images, labels, PRETRAIN_DROP_RATE, rng), len(images)
        if stage == "search":  # an epoch of search runs both passes over every batch
            images, labels = self.images(config.search_batch)
            return lambda: (self.search.controller_step(images, labels, 0),
                            self.search.metagraph_step(images, labels)), len(images)
        images, labels = self.images(config.finetune_batch)
        if stage == "finetune":  # Finetune.step on the searched policy's architectures instead of its controller's
            finetune, selection = self.finetune, searched_selection(len(images))
            return lambda: supervised_step(finetune.model, finetune.optimizer, images, labels, selection), len(images)
        stage = stage.removesuffix("-untrained")
        return lambda: getattr(self, stage).step(images, labels), len(images)


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    table = load_table(SEARCH_LUT)
    base = TrainConfig(dataset="digits", workers=0, limit_train=256, limit_val=64)
    with torch_threads(THREADS):
        torch.manual_seed(0)
        yield {name: StageSteps(config, tmp_path_factory.mktemp(name), table)
               for name, config in (("default", base), ("plain", dataclasses.replace(base, **PLAIN)))}


def settle(step) -> int:
    """Take untimed steps until one touches fewer than ``SETTLED_FAULTS`` fresh pages; return how many it took.

    A process's first steps fault in the heap it then reuses. In a probe here the pre-training step at batch 64
    (channels-last) took 676k, 162k, 63k, 67k, 55k, 53k, 63k and then 1.4k page faults in its first eight steps, the
    plain step at batch 32 about 2.5k from its first. One warm-up pair left the default path's timed steps inside
    that growth (8.1, 9.2, 4.7, 2.9, 5.0 s for 64 images in one CI run, the plain steps steady): the erratic
    pre-training ratio of docs/results/training-speed/.
    """
    def faults() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    taken = 0
    while taken < MAX_SETTLING_STEPS:
        before = faults()
        step()
        taken += 1
        if faults() - before < SETTLED_FAULTS:
            break
    return taken


def _images_per_second(step, images: int) -> float:
    start = time.perf_counter()
    step()
    return images / (time.perf_counter() - start)


def paired_rates(default, plain, pairs: int) -> dict[str, list[float]]:
    """Images/s of ``pairs`` alternating plain and default steps, each pair timed back to back."""
    rates = {"default": [], "plain": []}
    for _ in range(pairs):
        for name, (step, images) in (("plain", plain), ("default", default)):
            rates[name].append(_images_per_second(step, images))
    return rates


def speedup(rates: dict[str, list[float]]) -> float:
    """The median over pairs of default/plain: a pair shares the machine's state, a stall spoils one pair only."""
    return float(np.median(np.array(rates["default"]) / np.array(rates["plain"])))


@pytest.mark.parametrize("stage", ["pretrain", "search", "finetune", "finetune-untrained", "mobilenetv2"])
def test_training_step(benchmark, steps, stage):
    with torch_threads(THREADS):
        default, plain = steps["default"].step(stage), steps["plain"].step(stage)
        rates = {"default": [], "plain": []}

        def time_plain():  # pytest-benchmark's untimed setup: each timed default step follows a plain one
            rates["plain"].append(_images_per_second(*plain))

        def time_default():
            rates["default"].append(_images_per_second(*default))

        settling = {name: settle(path[0]) for name, path in (("default", default), ("plain", plain))}
        benchmark.group = "training step"
        benchmark.pedantic(time_default, setup=time_plain, rounds=PAIRS, warmup_rounds=0)
        if stage == "pretrain" and speedup(rates) < MIN_PRETRAIN_SPEEDUP:  # confirm a shortfall before failing
            for name, more in paired_rates(default, plain, 2 * PAIRS).items():
                rates[name] += more
        default_rate, plain_rate = (float(np.median(rates[name])) for name in ("default", "plain"))
        benchmark.extra_info |= {"images_per_s": round(default_rate, 1), "plain_images_per_s": round(plain_rate, 1),
                                 "speedup": round(speedup(rates), 3), "pairs": len(rates["default"]),
                                 "batch": default[1], "plain_batch": plain[1], "settling_steps": settling}
    if stage == "pretrain":
        assert speedup(rates) >= MIN_PRETRAIN_SPEEDUP, benchmark.extra_info

"""The epoch loop every stage shares: data loaders, progress, evaluation, one supervised or policy-gradient step, and
the resumable :class:`Stage`."""


from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from instanas.atomic import atomic_write
from instanas.batchnorm import recalibrated
from instanas.controller import Controller, check_controller_shape, encouraged
from instanas.data import dataset_info, hold_out, load_dataset, subset
from instanas.errors import CheckpointError
from instanas.lock import FileLock
from instanas.metagraph import MetaGraph
from instanas.progress import progress_bar
from instanas.reward import lut_latency
from instanas.training.checkpoints import load_checkpoint, record_run, save_checkpoint
from instanas.training.config import REQUIRES, TrainConfig, with_setting_defaults
from instanas.training.runtime import Workers
from instanas.training.scalars import ScalarLog


@dataclass
class EpochTotals:
    """Sums over one epoch's batches (over all workers once reduced)."""

    loss: float = 0.0
    correct: float = 0.0
    latency_ms: float = 0.0
    samples: float = 0.0

    def add(self, loss: Tensor, correct: Tensor, latency_ms: Tensor | None = None) -> None:
        self.loss += float(loss) * len(correct)
        self.correct += float(correct.sum())
        self.latency_ms += float(latency_ms.sum()) if latency_ms is not None else 0.0
        self.samples += len(correct)

    def summary(self, workers: Workers, prefix: str) -> dict:
        loss, correct, latency, samples = workers.total([self.loss, self.correct, self.latency_ms, self.samples])
        row = {f"{prefix}_images": int(samples)}
        samples = max(samples, 1)
        row |= {f"{prefix}_loss": loss / samples, f"{prefix}_accuracy": correct / samples}
        if latency:
            row[f"{prefix}_lut_ms"] = latency / samples
        return row


class Trainer:
    """Data, models and the epoch loop shared by every stage; with ``tensorboard``, each stage's epochs also go to
    ``<out>/tb/<stage>/`` (:mod:`instanas.training.scalars`).

    Every network and batch a stage trains or evaluates goes through :meth:`place` and :meth:`batch`, which lay them
    out in ``config.memory_format``: on these CPUs channels-last steps a static network about 1.3× and the meta-graph
    1.1–1.3× as fast as PyTorch's default layout, the less the fewer images each module runs on
    (``docs/results/training-speed/``).
    """

    def __init__(self, config: TrainConfig, out: Path, workers: Workers, *, show_progress: bool = True,
                 tensorboard: bool = True):
        self.config, self.out, self.workers = config, Path(out), workers
        self.scalars = ScalarLog(self.out / "tb") if tensorboard and workers.main else None
        self.info = dataset_info(config.dataset, config.resolution, config.data_dir)
        self.resolution = self.info.resolution
        check_controller_shape(self.resolution, config.controller_width, config.controller_downsample)
        training = [subset(load_dataset(config.dataset, config.data_dir, train=True, augment=augment,
                                        resolution=config.resolution), config.limit_train, config.seed)
                    for augment in ((True, False) if config.holdout else (True,))]
        self.train_set, self.holdout_set = hold_out(training[0], training[-1], config.holdout, config.seed)
        self.val_set = subset(load_dataset(config.dataset, config.data_dir, train=False, resolution=config.resolution),
                              config.limit_val, config.seed)
        self.show_progress = show_progress and workers.main
        self.device = workers.device
        self.memory_format = {"channels_last": torch.channels_last,
                              "contiguous": torch.contiguous_format}[config.memory_format]
        self._calibration: list[Tensor] | None = None
        if workers.main:
            record_run(self.out, config, self.resolution)

    def loader(self, dataset: Dataset, batch: int, train: bool) -> DataLoader:
        sampler = None
        if self.workers.world > 1:
            sampler = DistributedSampler(dataset, self.workers.world, self.workers.rank, shuffle=train,
                                         seed=self.config.seed)
        return DataLoader(
            dataset,
            batch_size=batch,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.config.workers,
            drop_last=train and len(dataset) > batch,
            pin_memory=self.device.type == "cuda",
        )

    def epoch(self, loader: DataLoader, epoch: int, label: str, step: Callable[[Tensor, Tensor], tuple[Tensor, ...]],
              prefix: str) -> dict:
        """Run ``step`` on every batch with a progress bar; return the epoch's reduced averages of what each step
        returns: its loss, which images were right and, optionally, their latency (:meth:`EpochTotals.add`)."""
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        totals = EpochTotals()
        with progress_bar(disable=not self.show_progress) as progress:
            bar = progress.add_task(f"{label} {epoch + 1}", total=len(loader), status="")
            for images, labels in loader:
                totals.add(*step(self.batch(images), labels.to(self.device, non_blocking=True)))
                accuracy = totals.correct / max(totals.samples, 1)
                loss = totals.loss / max(totals.samples, 1)
                progress.update(bar, advance=1, status=f"loss {loss:.3f} acc {accuracy:.3f}")
        return totals.summary(self.workers, prefix)

    def place(self, network: nn.Module) -> nn.Module:
        """``network`` on the run's device, in its memory format."""
        return network.to(self.device, memory_format=self.memory_format)

    def batch(self, images: Tensor) -> Tensor:
        """A batch of images on the run's device, in its memory format."""
        return images.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def optimizer(self, kind: str, parameters, lr: float, **options) -> torch.optim.Optimizer:
        """``torch.optim.Adam`` (``kind`` "adam") or ``SGD`` ("sgd"); with ``config.fused_optimizer``, in their fused
        kernel, one pass over every parameter. PyTorch's CPU default steps each parameter tensor by a few small ops:
        the meta-graph has 722 (9.6 M weights). The same update, rounded in another order (docs/training.md,
        "Training speed")."""
        optimizers = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
        if not self.config.fused_optimizer:
            return optimizers[kind](parameters, lr=lr, **options)
        optimizer = optimizers[kind](parameters, lr=lr, fused=True, **options)
        if kind == "sgd" and options.get("momentum", 0) and not options.get("dampening", 0):
            _zero_momentum_buffers(optimizer)
            optimizer.register_load_state_dict_post_hook(_zero_momentum_buffers)
        return optimizer

    def new_metagraph(self) -> MetaGraph:
        return self.place(MetaGraph(self.resolution, self.info.num_classes, self.config.cell_merge))

    def new_controller(self) -> Controller:
        config = self.config
        return self.place(Controller(self.resolution, config.controller_input, config.controller_width,
                                     config.controller_downsample))

    def calibration_images(self, batches: int = 10) -> list[Tensor]:
        """A fixed set of training images (the first batches of 64 of a seeded shuffle) to recalibrate batch norm
        on; a smaller set is the start of a larger one."""
        if self._calibration is None or len(self._calibration) < batches:
            loader = DataLoader(self.train_set, batch_size=64, shuffle=True,
                                generator=torch.Generator().manual_seed(self.config.seed))
            self._calibration = [self.batch(images) for images, _ in itertools.islice(loader, batches)]
        return self._calibration[:batches]

    def evaluate(self, network: nn.Module, choose: Callable[[Tensor], Tensor] | None = None, table=None,
                 mode: str = "plain", recalibrate: bool = False) -> dict:
        """Validation accuracy, with architectures from ``choose(images)`` (a meta-graph) or none (a static network),
        and the architectures' mean LUT latency. ``recalibrate``: with batch-norm statistics re-estimated for the
        architectures ``choose`` gives (:mod:`instanas.batchnorm`); the network's own are restored afterwards."""
        network.eval()
        if recalibrate:
            with recalibrated(network, self.calibration_images(), choose):
                return self.evaluate(network, choose, table, mode)
        loader = self.loader(self.val_set, 100, train=False)
        totals, architectures = EpochTotals(), set()
        with torch.no_grad():
            for images, labels in loader:
                images, labels = self.batch(images), labels.to(self.device)
                selection = choose(images) if choose else None
                logits = network(images) if selection is None else network(images, selection)
                latency = lut_latency(table, selection, mode) if table is not None else None
                totals.add(F.cross_entropy(logits, labels), logits.argmax(1) == labels, latency)
                if table is not None:
                    architectures |= {row.tobytes() for row in selection.cpu().numpy().astype(bool)}
        row = totals.summary(self.workers, "val")
        if table is not None:
            row["val_distinct_architectures"] = len(self.workers.union(architectures))
        return row


def supervised_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
                    selection: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One cross-entropy step (of a meta-graph: on per-image ``selection``; None: a static network); the loss and
    which images were right."""
    model.train()
    logits = model(images) if selection is None else model(images, selection)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), logits.argmax(1) == labels


def self_critical_loss(probabilities: Tensor, reward: Callable[[Tensor], tuple[Tensor, ...]], alpha: float,
                       entropy_weight: float, decided: Tensor | None = None,
                       summed: bool = False) -> tuple[Tensor, tuple[Tensor, ...]]:
    """REINFORCE with the self-critical baseline (paper eq. 1), as InstaNAS and BlockDrop train their policies.

    Actions are drawn from the encouraged probabilities p' = α·p + (1 − α)(1 − p); the advantage of each image is
    ``reward(drawn, True)`` minus ``reward(greedy, False)`` (greedy: p > 0.5), priced in that order (``reward``
    returns the per-image reward first, then anything the caller wants back for the drawn actions). The entropy
    term is the authors' β·Σ −p'·log p'. Entries outside ``decided`` are forced on (BlockDrop's curriculum) and get
    no gradient. Returns the loss, averaged over images (``summed``: summed over them, as BlockDrop's fine-tuning
    script does), and what ``reward`` returned for the drawn actions.
    """
    explore = encouraged(probabilities, alpha)
    distribution = torch.distributions.Bernoulli(probs=explore)
    actions = distribution.sample()
    greedy = (probabilities.detach() > 0.5).float()
    log_probability = distribution.log_prob(actions)
    if decided is not None:
        actions, greedy = torch.where(decided, actions, 1.0), torch.where(decided, greedy, 1.0)
        log_probability = log_probability * decided
    sampled = reward(actions, True)
    advantage = sampled[0] - reward(greedy, False)[0]
    clamped = explore.clamp(1e-15, 1 - 1e-15)
    entropy = -(clamped * clamped.log()).sum()
    policy_term = (log_probability * advantage.view(-1, *[1] * (probabilities.dim() - 1))).sum()
    loss = -policy_term - entropy_weight * entropy
    return (loss if summed else loss / len(probabilities)), sampled


def _zero_momentum_buffers(optimizer: torch.optim.Optimizer) -> None:
    """Give every parameter without one a zero momentum buffer. PyTorch's fused SGD (2.14) fails when some buffers
    exist and a parameter gets its first gradient later — a module no child ran until then — and the loop creates
    that buffer as the gradient itself, which is what a zero buffer becomes in its first step (without dampening)."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state[parameter]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(parameter, memory_format=torch.preserve_format)


class Stage:
    """One resumable stage: its checkpoint, metrics file and epoch loop."""

    name: str
    setting_keys: tuple[str, ...] = ()  # the TrainConfig fields this stage reads

    def __init__(self, trainer: Trainer, resume: bool):
        self.trainer, self.config, self.workers = trainer, trainer.config, trainer.workers
        self.checkpoint_path = trainer.out / f"{self.name}.pt"
        self.settings = self.stage_settings()
        self.history: list[dict] = []
        self.start_epoch = 0
        previous = REQUIRES.get(self.name)
        if previous and not (trainer.out / f"{previous}.pt").exists():
            raise CheckpointError(f"{trainer.out}: stage {self.name} needs stage {previous} first (no {previous}.pt)")
        if self.checkpoint_path.exists() and not resume:
            raise CheckpointError(f"{self.checkpoint_path} exists: pass --resume to continue it, or another --out")
        self.resumed = load_checkpoint(self.checkpoint_path) if resume and self.checkpoint_path.exists() else None
        if self.resumed:
            saved = with_setting_defaults(self.resumed["settings"], self.settings)
            if saved != self.settings:
                changed = [key for key in self.settings if saved.get(key) != self.settings[key]]
                raise CheckpointError(f"{self.checkpoint_path}: saved with other settings ({', '.join(changed)})")
            self.history = list(self.resumed["history"])
            self.start_epoch = self.resumed["epoch"] + 1

    @property
    def epochs(self) -> int:
        raise NotImplementedError

    def stage_settings(self) -> dict:
        """What a checkpoint must agree with to be resumed: the data, and the settings ``setting_keys`` names."""
        return self.config.settings(self.setting_keys)

    def state(self) -> dict:
        """Models and optimisers to checkpoint."""
        raise NotImplementedError

    def train_epoch(self, epoch: int) -> dict:
        raise NotImplementedError

    def run(self) -> list[dict]:
        """Train the epochs left, holding ``<stage>.lock`` in the run folder (main worker): one writer per stage."""
        if not self.workers.main:
            return self._run()
        with FileLock(self.checkpoint_path.with_suffix(".lock"), f"stage {self.name} of {self.trainer.out}"):
            return self._run()

    def _run(self) -> list[dict]:
        for epoch in range(self.start_epoch, self.epochs):
            start = time.perf_counter()
            torch.manual_seed(self.epoch_seed(epoch))
            row = {"stage": self.name, "epoch": epoch} | self.train_epoch(epoch)
            row["epoch_s"] = round(time.perf_counter() - start, 1)  # wall time, evaluation included
            self.history.append(row)
            if self.workers.main:
                save_checkpoint(
                    self.checkpoint_path,
                    {"settings": self.settings, "epoch": epoch, "history": self.history} | self.state(),
                )
                metrics = pd.DataFrame(self.history).to_csv(index=False)
                atomic_write(self.trainer.out / f"metrics-{self.name}.csv", metrics)
                if self.trainer.scalars:
                    self.trainer.scalars.epoch(self.name, row)
        if self.trainer.scalars:
            self.trainer.scalars.close()
        return self.history

    def epoch_seed(self, epoch: int) -> int:
        """The seed of one epoch's random draws (shuffling, augmentation, children, the controller's samples), from
        the run's seed, the stage, the epoch and the worker: a stage resumed at epoch k draws what an uninterrupted one
        draws there."""
        entropy = [self.config.seed, zlib.crc32(self.name.encode()), epoch, self.workers.rank]
        return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0])

    def _restore(self, **modules) -> None:
        if self.resumed:
            for key, module in modules.items():
                module.load_state_dict(self.resumed[key])

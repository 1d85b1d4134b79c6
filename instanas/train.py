"""InstaNAS training (paper §3.1–3.3, §4.2): pre-train the meta-graph, search the controller, fine-tune a policy.

A run folder holds one checkpoint per stage (``<stage>.pt``, rewritten atomically after every epoch, so an interrupted
stage resumes from its last finished epoch), the search's controller snapshots (``snapshots/epoch-NNN.pt``: the
accuracy–latency frontier of one search), and ``metrics-<stage>.csv``. Each stage runs alone and reads what the stage
before it left. The ``mobilenetv2`` stage trains the MobileNetV2-like architecture of the same space with the
fine-tuning recipe and epochs: the baseline at the same budget.

Under ``torchrun`` every stage runs data-parallel (DistributedDataParallel; gloo on CPU, NCCL on CUDA); rank 0 alone
writes files and shows progress.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from instanas.atomic import atomic_write
from instanas.batchnorm import recalibrated
from instanas.controller import Controller, deterministic_policy, encouraged
from instanas.data import dataset_info, hold_out, load_dataset, subset
from instanas.errors import CheckpointError, ConfigError
from instanas.metagraph import MetaGraph, check_merge
from instanas.progress import progress_bar
from instanas.reward import LatencyBounds, LatencyReward, check_reward, instance_reward, lut_latency
from instanas.space import ARCH_SHAPE, mobilenetv2_architecture, sample_architectures, with_default_modules

STAGES = ("pretrain", "search", "finetune", "mobilenetv2")
PRETRAIN_SCHEDULES = ("shrinking", "paper")
REQUIRES = {"search": "pretrain", "finetune": "search"}


@dataclass
class TrainConfig:
    """Every hyper-parameter is a CLI flag; defaults are the paper's and the authors' released scripts'."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    device: str = "cpu"
    workers: int = 2
    seed: int = 0
    limit_train: int | None = None  # quick runs: a fixed subset of the training split
    limit_val: int | None = None
    holdout: float = 0.1  # share of the training split no stage trains on: the one-shot baseline chooses on it
    cell_merge: str = "mean"  # how a cell merges its modules: "mean", or "sum" (the paper's); see instanas.metagraph
    # stage 1: one-shot pre-training with drop-path
    pretrain_epochs: int = 164
    pretrain_lr: float = 0.1
    pretrain_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    final_drop_path: float = 0.5
    pretrain_schedule: str = "shrinking"  # "paper": one drop rate for all, step decay; see Pretrain
    # stage 2: joint search
    search_epochs: int = 100
    controller_lr: float = 1e-3
    metagraph_lr: float = 1e-3  # the authors' script trains the meta-graph with SGD at the controller's lr
    search_momentum: float = 0.0  # ... plain SGD: no momentum, no weight decay (their --wd defaults to 0)
    search_weight_decay: float = 0.0
    search_batch: int = 32
    reward: str = "graded"  # "paper": eq. 2 as published; "graded": see instanas.reward
    alpha: float = 0.8
    entropy_weight: float = 0.8
    reward_correct: float = 10.0
    reward_wrong: float = -10.0
    upper_start: float = 0.7
    upper_end: float = 0.5
    # stage 3: re-training a chosen policy (and the MobileNetV2 baseline)
    finetune_epochs: int = 200
    finetune_lr: float = 0.01
    finetune_batch: int = 32
    snapshot: int | None = None  # the search epoch whose controller to fine-tune (default: the last)
    from_scratch: bool = True
    # baselines (``instanas compare``): BlockDrop's curriculum and joint-fine-tuning scripts, ConvNet-AIG's CIFAR one
    blockdrop_curriculum_epochs: int = 10  # one more droppable cell per epoch; 10 cells can be dropped
    blockdrop_joint_epochs: int = 40
    blockdrop_lr: float = 1e-3
    blockdrop_joint_lr: float = 1e-4
    blockdrop_entropy_weight: float = 0.1
    blockdrop_penalty: float = -1.0  # γ, the reward of a wrong prediction during the curriculum
    blockdrop_joint_penalty: float = -5.0
    aig_epochs: int = 40
    aig_lr: float = 0.01  # SGD on the trained MobileNetV2 (ConvNet-AIG trains from scratch at 0.1)
    aig_weight_decay: float = 5e-4
    aig_target: float = 0.6  # the fraction of images each gate should let through
    aig_loss_weight: float = 2.0

    def stage_settings(self, stage: str) -> dict:
        """What a checkpoint of ``stage`` must agree with to be resumed."""
        shared = ("dataset", "seed", "limit_train", "limit_val", "cell_merge")
        own = {
            "pretrain": ("pretrain_epochs", "pretrain_lr", "pretrain_batch", "momentum", "weight_decay", "final_drop_path",
                         "pretrain_schedule"),
            "search": ("search_epochs", "controller_lr", "metagraph_lr", "search_momentum", "search_weight_decay",
                       "search_batch", "reward", "alpha", "entropy_weight", "reward_correct", "reward_wrong",
                       "upper_start", "upper_end"),
            "finetune": ("finetune_epochs", "finetune_lr", "finetune_batch", "snapshot", "from_scratch"),
            "mobilenetv2": ("finetune_epochs", "finetune_lr", "finetune_batch"),
            "blockdrop": ("blockdrop_curriculum_epochs", "blockdrop_joint_epochs", "blockdrop_lr", "blockdrop_joint_lr",
                          "blockdrop_entropy_weight", "blockdrop_penalty", "blockdrop_joint_penalty", "alpha",
                          "search_batch"),
            "convnet-aig": ("aig_epochs", "aig_lr", "momentum", "aig_weight_decay", "aig_target", "aig_loss_weight",
                            "finetune_batch"),
        }[stage.split("-")[0] if stage.startswith("mobilenetv2") else stage]
        values = asdict(self)
        return {key: values[key] for key in (*shared, *own)}

    def __post_init__(self) -> None:
        check_merge(self.cell_merge)
        check_reward(self.reward)
        if self.pretrain_schedule not in PRETRAIN_SCHEDULES:
            raise ConfigError(f"unknown pre-training schedule {self.pretrain_schedule!r} "
                              f"(choose from {', '.join(PRETRAIN_SCHEDULES)})")
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"held-out share {self.holdout} must lie in [0, 1)")
        if not 0 <= self.final_drop_path < 1:
            raise ConfigError(f"final drop-path rate {self.final_drop_path} must lie in [0, 1)")


# -- distributed --------------------------------------------------------------------------------------------------
@dataclass
class Workers:
    """This process's place among the data-parallel workers (one process when not under ``torchrun``)."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP when distributed; unused parameters are expected, since each batch runs only selected modules."""
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)

    def total(self, values: list[float]) -> list[float]:
        """Sum over workers."""
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def union(self, items: set) -> set:
        """The union over workers of a set of picklable items."""
        if self.world == 1:
            return items
        gathered: list[set | None] = [None] * self.world
        dist.all_gather_object(gathered, items)
        return set().union(*gathered)


@contextmanager
def workers_for(device: str) -> Iterator[Workers]:
    """Join the ``torchrun`` process group if there is one; leave it at the end."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        yield Workers(device=torch.device(device))
        return
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield Workers(dist.get_rank(), world, torch.device(f"cuda:{local}" if cuda else "cpu"))
    finally:
        dist.destroy_process_group()


# -- checkpoints ----------------------------------------------------------------------------------------------------
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


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


RUN_FILE = "run.json"
RUN_KEYS = ("dataset", "seed", "limit_train", "limit_val", "holdout", "cell_merge")  # TrainConfig's, per run
RUN_DEFAULTS = {"cell_merge": "sum", "holdout": 0.0}  # what run folders written before a field existed were trained with


def record_run(out: Path, config: TrainConfig, resolution: int) -> None:
    """Write (first stage) or check (later stages) what every stage of a run folder must share: its data."""
    values = asdict(config)
    run = {"data_dir": config.data_dir, "resolution": resolution} | {key: values[key] for key in RUN_KEYS}
    path = out / RUN_FILE
    if path.exists():
        saved = read_run(out)
        changed = [key for key in run if key != "data_dir" and saved.get(key, RUN_DEFAULTS.get(key)) != run[key]]
        if changed:
            raise CheckpointError(f"{path}: this run folder was trained with other data or cells ({', '.join(changed)})")
        return
    atomic_write(path, json.dumps(run, indent=2) + "\n")


def read_run(out: Path) -> dict:
    path = Path(out) / RUN_FILE
    try:
        return RUN_DEFAULTS | json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{out}: not a training run folder (no {RUN_FILE})") from None
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable ({error.__class__.__name__})") from None


# -- the epoch loop ------------------------------------------------------------------------------------------------
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
    """Data, models and the epoch loop shared by every stage."""

    def __init__(self, config: TrainConfig, out: Path, workers: Workers, *, show_progress: bool = True):
        self.config, self.out, self.workers = config, Path(out), workers
        self.info = dataset_info(config.dataset)
        self.resolution = self.info.resolution
        training = [subset(load_dataset(config.dataset, config.data_dir, train=True, augment=augment), config.limit_train,
                           config.seed) for augment in ((True, False) if config.holdout else (True,))]
        self.train_set, self.holdout_set = hold_out(training[0], training[-1], config.holdout, config.seed)
        self.val_set = subset(load_dataset(config.dataset, config.data_dir, train=False), config.limit_val, config.seed)
        self.show_progress = show_progress and workers.main
        self.device = workers.device
        self._calibration: list[Tensor] | None = None
        if workers.main:
            record_run(self.out, config, self.resolution)

    def loader(self, dataset: Dataset, batch: int, train: bool) -> DataLoader:
        sampler = None
        if self.workers.world > 1:
            sampler = DistributedSampler(dataset, self.workers.world, self.workers.rank, shuffle=train, seed=self.config.seed)
        return DataLoader(
            dataset,
            batch_size=batch,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=self.config.workers,
            drop_last=train and len(dataset) > batch,
            pin_memory=self.device.type == "cuda",
        )

    def epoch(self, loader: DataLoader, epoch: int, label: str, step: Callable[[Tensor, Tensor, EpochTotals], None],
              prefix: str) -> dict:
        """Run ``step`` on every batch with a progress bar; return the epoch's reduced averages."""
        if isinstance(loader.sampler, DistributedSampler):
            loader.sampler.set_epoch(epoch)
        totals = EpochTotals()
        with progress_bar(disable=not self.show_progress) as progress:
            bar = progress.add_task(f"{label} {epoch + 1}", total=len(loader), status="")
            for images, labels in loader:
                step(images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True), totals)
                accuracy = totals.correct / max(totals.samples, 1)
                progress.update(bar, advance=1, status=f"loss {totals.loss / max(totals.samples, 1):.3f} acc {accuracy:.3f}")
        return totals.summary(self.workers, prefix)

    def new_metagraph(self) -> MetaGraph:
        return MetaGraph(self.resolution, self.info.num_classes, self.config.cell_merge).to(self.device)

    def new_controller(self) -> Controller:
        return Controller(self.resolution).to(self.device)

    def calibration_images(self, batches: int = 10) -> list[Tensor]:
        """A fixed set of training images (the first batches of 64 of a seeded shuffle) to recalibrate batch norm
        on; a smaller set is the start of a larger one."""
        if self._calibration is None or len(self._calibration) < batches:
            loader = DataLoader(self.train_set, batch_size=64, shuffle=True,
                                generator=torch.Generator().manual_seed(self.config.seed))
            self._calibration = [images.to(self.device) for images, _ in itertools.islice(loader, batches)]
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
                images, labels = images.to(self.device), labels.to(self.device)
                selection = choose(images) if choose else None
                logits = network(images, selection) if choose else network(images)
                latency = lut_latency(table, selection, mode) if table is not None else None
                totals.add(F.cross_entropy(logits, labels), logits.argmax(1) == labels, latency)
                if table is not None:
                    architectures |= {row.tobytes() for row in selection.cpu().numpy().astype(bool)}
        row = totals.summary(self.workers, "val")
        if table is not None:
            row["val_distinct_architectures"] = len(self.workers.union(architectures))
        return row


# -- stages ---------------------------------------------------------------------------------------------------------
def drop_path_rate(epoch: int, epochs: int, final: float) -> float:
    """0 for the first half of pre-training, then rising linearly to ``final`` at the last epoch (paper §3.2)."""
    half = epochs / 2
    if epoch < half or epochs < 2:
        return 0.0
    return final * min((epoch + 1 - half) / (epochs - half), 1.0)


def supervised_step(model: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, labels: Tensor,
                    *selection: Tensor) -> tuple[Tensor, Tensor]:
    """One cross-entropy step (of a meta-graph: on per-image ``selection``); the loss and which images were right."""
    model.train()
    logits = model(images, *selection)
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


def _fixed(architecture: np.ndarray, count: int, device) -> Tensor:
    return torch.as_tensor(architecture, device=device).unsqueeze(0).expand(count, *ARCH_SHAPE)


class Stage:
    """One resumable stage: its checkpoint, metrics file and epoch loop."""

    name: str

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
            if self.resumed["settings"] != self.settings:
                changed = [key for key in self.settings if self.resumed["settings"].get(key) != self.settings[key]]
                raise CheckpointError(f"{self.checkpoint_path}: saved with other settings ({', '.join(changed)})")
            self.history = list(self.resumed["history"])
            self.start_epoch = self.resumed["epoch"] + 1

    @property
    def epochs(self) -> int:
        raise NotImplementedError

    def stage_settings(self) -> dict:
        """What a checkpoint must agree with to be resumed."""
        return self.config.stage_settings(self.name)

    def state(self) -> dict:
        """Models and optimisers to checkpoint."""
        raise NotImplementedError

    def train_epoch(self, epoch: int) -> dict:
        raise NotImplementedError

    def run(self) -> list[dict]:
        for epoch in range(self.start_epoch, self.epochs):
            row = {"stage": self.name, "epoch": epoch} | self.train_epoch(epoch)
            self.history.append(row)
            if self.workers.main:
                save_checkpoint(
                    self.checkpoint_path,
                    {"settings": self.settings, "epoch": epoch, "history": self.history} | self.state(),
                )
                atomic_write(self.trainer.out / f"metrics-{self.name}.csv", pd.DataFrame(self.history).to_csv(index=False))
        return self.history

    def _restore(self, **modules) -> None:
        if self.resumed:
            for key, module in modules.items():
                module.load_state_dict(self.resumed[key])


class Pretrain(Stage):
    """One-shot pre-training with drop-path: the whole meta-graph for the first half, then random children.

    Each image of a batch runs its own random child (as the authors' pre-training does), so the batch-norm
    statistics describe the mix of children that the search later feeds the meta-graph, not one child per batch.
    Validation uses children drawn the same way, from a fixed seed. Two schedules of the second half:

    * ``paper``: every module of every image dropped with the rate r rising linearly to ``final_drop_path``;
      SGD with step decay ×0.1 at 50 % and 75 % of the epochs, so the drop-path phase runs at lr 0.01 and 0.001;
    * ``shrinking`` (default): the same mean rate, spread over the images — each draws its own keep probability
      uniformly from [1 − 2r, 1] (at least 0.05), so sparse children, the ones a latency-aware search ends on, are
      trained too; SGD with cosine annealing, so the meta-graph still learns while it shrinks.
    """

    name = "pretrain"

    def __init__(self, trainer: Trainer, resume: bool):
        super().__init__(trainer, resume)
        config = self.config
        self.metagraph = trainer.new_metagraph()
        self.model = self.workers.wrap(self.metagraph)
        self.optimizer = torch.optim.SGD(self.metagraph.parameters(), lr=config.pretrain_lr, momentum=config.momentum,
                                         weight_decay=config.weight_decay, nesterov=True)
        if config.pretrain_schedule == "paper":
            milestones = [int(config.pretrain_epochs * 0.5), int(config.pretrain_epochs * 0.75)]
            self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, 0.1)
        else:
            self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.pretrain_epochs)
        self._restore(metagraph=self.metagraph, optimizer=self.optimizer, schedule=self.schedule)
        # seeded by rank too: each worker draws children for its own images
        self.rng = np.random.default_rng([config.seed, self.start_epoch, self.workers.rank])

    @property
    def epochs(self) -> int:
        return self.config.pretrain_epochs

    def state(self) -> dict:
        return {"metagraph": self.metagraph.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict()}

    @staticmethod
    def children(count: int, drop_rate: float, rng: np.random.Generator, device, spread: bool = False) -> Tensor:
        """One random child per image: every module kept with probability 1 − ``drop_rate``, or (``spread``) with
        a keep probability each image draws uniformly from [1 − 2·``drop_rate``, 1], at least 0.05."""
        keep = rng.uniform(max(1 - 2 * drop_rate, 0.05), 1, count) if spread else 1 - drop_rate
        archs = sample_architectures(count, keep=keep, seed=int(rng.integers(2**32)))
        return torch.as_tensor(archs, device=device)

    def train_epoch(self, epoch: int) -> dict:
        rate = drop_path_rate(epoch, self.epochs, self.config.final_drop_path)
        spread = self.config.pretrain_schedule == "shrinking"

        def step(images: Tensor, labels: Tensor, totals: EpochTotals) -> None:
            selection = self.children(len(images), rate, self.rng, images.device, spread)
            totals.add(*supervised_step(self.model, self.optimizer, images, labels, selection))

        loader = self.trainer.loader(self.trainer.train_set, self.config.pretrain_batch, train=True)
        row = self.trainer.epoch(loader, epoch, "pretrain", step, "train")
        self.schedule.step()
        validation_rng = np.random.default_rng([self.config.seed, self.workers.rank])
        sampled = lambda images: self.children(len(images), rate, validation_rng, images.device, spread)  # noqa: E731
        return row | {"drop_path": rate} | self.trainer.evaluate(self.metagraph, sampled)


class Search(Stage):
    """Epochs alternate: the controller learns (meta-graph fixed), then the meta-graph learns (controller fixed).

    Controller: policy gradient with the self-critical baseline (eq. 1): advantage = R(drawn) − R(greedy), where
    the drawn child comes from p' (encouragement α) and the greedy policy is p > 0.5; R is eq. 2 with the latency
    reward ``config.reward`` (:mod:`instanas.reward`). The entropy term is the authors' released one,
    β·Σ −p'·log p', subtracted from the loss. Meta-graph: cross-entropy on the controller's drawn policies shuffled
    within the batch (policy random shuffling), plain SGD as in the authors' script. Every epoch saves a controller
    snapshot. A resumed search refuses another LUT, like any other changed setting.
    """

    name = "search"

    def __init__(self, trainer: Trainer, resume: bool, table):
        self.table, self.mode = table, table.default_mode
        super().__init__(trainer, resume)
        config = self.config
        bounds = LatencyBounds.from_table(table, config.search_epochs, start_fraction=config.upper_start,
                                          end_fraction=config.upper_end)
        self.latency_reward = LatencyReward.build(config.reward, table, bounds, config.alpha)
        self.metagraph = trainer.new_metagraph()
        self.controller = trainer.new_controller()
        if not self.resumed:
            self.metagraph.load_state_dict(load_checkpoint(trainer.out / "pretrain.pt")["metagraph"])
        self.controller_model = self.workers.wrap(self.controller)
        self.metagraph_model = self.workers.wrap(self.metagraph)
        self.controller_optimizer = torch.optim.Adam(self.controller.parameters(), lr=config.controller_lr)
        self.metagraph_optimizer = torch.optim.SGD(self.metagraph.parameters(), lr=config.metagraph_lr,
                                                   momentum=config.search_momentum,
                                                   weight_decay=config.search_weight_decay)
        self._restore(metagraph=self.metagraph, controller=self.controller,
                      controller_optimizer=self.controller_optimizer, metagraph_optimizer=self.metagraph_optimizer)
        self.snapshots = trainer.out / "snapshots"

    @property
    def epochs(self) -> int:
        return self.config.search_epochs

    def stage_settings(self) -> dict:
        """The LUT prices every reward, so it is a setting too (its content hash and the estimate mode)."""
        return super().stage_settings() | {"lut": self.table.content_hash, "lut_mode": self.mode}

    def state(self) -> dict:
        return {"metagraph": self.metagraph.state_dict(), "controller": self.controller.state_dict(),
                "controller_optimizer": self.controller_optimizer.state_dict(),
                "metagraph_optimizer": self.metagraph_optimizer.state_dict(),
                "reward": self.latency_reward.as_dict()}

    def _reward(self, images: Tensor, labels: Tensor, probabilities: Tensor, epoch: int) -> Callable:
        """The reward of ``self_critical_loss`` for one batch: eq. 2 with this search's latency reward."""
        price = self.latency_reward.pricer(self.table, probabilities, epoch, self.config.alpha)

        def reward(actions: Tensor, drawn: bool) -> tuple[Tensor, Tensor, Tensor]:
            selection = with_default_modules(actions)
            with torch.no_grad():
                correct = self.metagraph(images, selection).argmax(1) == labels
            latency_reward, latency = price(selection, drawn)
            return (instance_reward(correct, latency_reward, positive=self.config.reward_correct,
                                    negative=self.config.reward_wrong), correct, latency)

        return reward

    def train_epoch(self, epoch: int) -> dict:
        config = self.config

        def controller_step(images: Tensor, labels: Tensor, totals: EpochTotals) -> None:
            self.metagraph.eval()
            self.controller_model.train()
            probabilities = self.controller_model(images)
            reward = self._reward(images, labels, probabilities, epoch)
            loss, (_, correct, latency) = self_critical_loss(probabilities, reward, config.alpha, config.entropy_weight)
            self.controller_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.controller_optimizer.step()
            totals.add(loss.detach(), correct, latency)

        def metagraph_step(images: Tensor, labels: Tensor, totals: EpochTotals) -> None:
            self.controller.eval()
            with torch.no_grad():
                explore = encouraged(self.controller(images), config.alpha)
                actions = torch.bernoulli(explore)
                actions = actions[torch.randperm(len(actions), device=actions.device)]  # policy random shuffling
            loss, correct = supervised_step(self.metagraph_model, self.metagraph_optimizer, images, labels, actions)
            totals.add(loss, correct, lut_latency(self.table, with_default_modules(actions), self.mode))

        trainer = self.trainer
        loader = trainer.loader(trainer.train_set, config.search_batch, train=True)
        row = {"upper_ms": self.latency_reward.bounds.upper(epoch), "lower_ms": self.latency_reward.bounds.lower}
        row |= trainer.epoch(loader, epoch, "search: controller", controller_step, "controller")
        row |= trainer.epoch(loader, epoch, "search: meta-graph", metagraph_step, "metagraph")
        self.controller.eval()
        row |= trainer.evaluate(self.metagraph, lambda images: deterministic_policy(self.controller(images)), self.table,
                                self.mode, recalibrate=True)
        if self.workers.main:
            snapshot = {"controller": self.controller.state_dict(), "metagraph": self.metagraph.state_dict(),
                        "epoch": epoch, "metrics": row, "resolution": trainer.resolution}
            save_checkpoint(self.snapshots / f"epoch-{epoch:03d}.pt", snapshot)
        return row


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


class Retrain(Stage):
    """Train a network on fixed architectures with Adam and cosine annealing (paper §4.2's re-training).

    The network is a meta-graph run on ``choose(images)``, or (``choose = None``) a static network.
    """

    state_key = "metagraph"

    def __init__(self, trainer: Trainer, resume: bool):
        super().__init__(trainer, resume)
        config = self.config
        self.network = self.build()
        self.model = self.workers.wrap(self.network)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=config.finetune_lr)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(config.finetune_epochs, 1))
        self._restore(**{self.state_key: self.network}, optimizer=self.optimizer, schedule=self.schedule)

    @property
    def epochs(self) -> int:
        return self.config.finetune_epochs

    def build(self) -> nn.Module:
        return self.trainer.new_metagraph()

    def choose(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def state(self) -> dict:
        return {self.state_key: self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict()}

    def train_epoch(self, epoch: int) -> dict:
        def step(images: Tensor, labels: Tensor, totals: EpochTotals) -> None:
            with torch.no_grad():
                selection = (self.choose(images),) if self.choose else ()
            totals.add(*supervised_step(self.model, self.optimizer, images, labels, *selection))

        loader = self.trainer.loader(self.trainer.train_set, self.config.finetune_batch, train=True)
        row = self.trainer.epoch(loader, epoch, self.name, step, "train")
        self.schedule.step()
        return row | {"lr": self.schedule.get_last_lr()[0]} | self.trainer.evaluate(self.network, self.choose)


class Finetune(Retrain):
    """Fix a search snapshot's controller; train the meta-graph on the architectures it assigns (p > 0.5).

    The run's ``finetune`` stage re-trains the snapshot ``--snapshot`` names (default: the last); ``instanas compare``
    re-trains others, each as its own stage ``finetune-epoch-NNN`` (``epoch``) with the same recipe.
    """

    name = "finetune"

    def __init__(self, trainer: Trainer, resume: bool, epoch: int | None = None):
        self.epoch_chosen = trainer.config.snapshot if epoch is None else epoch
        if epoch is not None:
            self.name = f"finetune-epoch-{epoch:03d}"
        super().__init__(trainer, resume)
        self.snapshot = snapshot_path(trainer.out, self.epoch_chosen)
        chosen = load_checkpoint(self.snapshot)
        self.controller = trainer.new_controller()
        self.controller.load_state_dict(self.resumed["controller"] if self.resumed else chosen["controller"])
        self.controller.eval().requires_grad_(False)
        if not self.resumed and not self.config.from_scratch:
            self.network.load_state_dict(chosen["metagraph"])

    def stage_settings(self) -> dict:
        return self.config.stage_settings("finetune") | {"snapshot": self.epoch_chosen}

    def choose(self, images: Tensor) -> Tensor:
        return deterministic_policy(self.controller(images))

    def state(self) -> dict:
        return super().state() | {"controller": self.controller.state_dict(), "snapshot": self.snapshot.name}


class MobileNetV2Baseline(Retrain):
    """The MobileNetV2-like architecture (``mb3e6`` in every cell), same recipe and epochs as fine-tuning."""

    name = "mobilenetv2"

    def choose(self, images: Tensor) -> Tensor:
        return _fixed(mobilenetv2_architecture(), len(images), images.device)


def run_stage(stage: str, config: TrainConfig, out: Path, *, resume: bool = False, table=None,
              show_progress: bool = True) -> list[dict]:
    """Run one stage in ``out`` (under ``torchrun``, on every worker); return its per-epoch metrics."""
    if stage not in STAGES:
        raise CheckpointError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)})")
    torch.manual_seed(config.seed)
    with workers_for(config.device) as workers:
        trainer = Trainer(config, out, workers, show_progress=show_progress)
        if stage == "search":
            runner = Search(trainer, resume, table)
        else:
            runner = {"pretrain": Pretrain, "finetune": Finetune, "mobilenetv2": MobileNetV2Baseline}[stage](trainer, resume)
        return runner.run()

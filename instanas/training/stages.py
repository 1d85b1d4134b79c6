"""The InstaNAS stages (paper §3.1–3.3, §4.2) and the MobileNetV2 baseline of the same space."""


from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from instanas.controller import deterministic_policy, encouraged, saved_controller
from instanas.errors import CheckpointError
from instanas.metagraph import fixed_selection
from instanas.reward import LatencyBounds, LatencyReward, instance_reward, lut_latency
from instanas.space import mobilenetv2_architecture, sample_architectures, with_default_modules
from instanas.training.checkpoints import load_checkpoint, read_run, save_checkpoint, snapshot_path
from instanas.training.config import STAGES, TrainConfig
from instanas.training.loop import Stage, Trainer, self_critical_loss, supervised_step
from instanas.training.runtime import workers_for


def drop_path_rate(epoch: int, epochs: int, final: float) -> float:
    """0 for the first half of pre-training, then rising linearly to ``final`` at the last epoch (paper §3.2)."""
    half = epochs / 2
    if epoch < half or epochs < 2:
        return 0.0
    return final * min((epoch + 1 - half) / (epochs - half), 1.0)


def load_metagraph(network: nn.Module, path: Path) -> None:
    """Start ``network`` from the meta-graph weights saved in ``path``; one line when they do not fit it."""
    try:
        network.load_state_dict(load_checkpoint(path)["metagraph"])
    except (KeyError, RuntimeError):
        raise CheckpointError(f"{path}: its meta-graph does not fit this run's (another number of classes?)") from None


def warm_start(network: nn.Module, trainer: Trainer, stage: str) -> None:
    """Start ``network`` from ``--warm-start``'s checkpoint of ``stage``. The weights do not depend on the
    resolution (only strides do), so a 32 px run starts a 64 px one of the same classes and cell merge."""
    source = Path(trainer.config.warm_start)
    merge = read_run(source)["cell_merge"]
    if merge != trainer.config.cell_merge:
        raise CheckpointError(f"{source}: its cells merge by {merge}, this run's by {trainer.config.cell_merge}")
    path = source / f"{stage}.pt"
    if not path.exists():
        raise CheckpointError(f"{source}: no {stage}.pt to warm-start stage {stage} from")
    load_metagraph(network, path)


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

    ``pretrain_init``: from scratch (the paper), or from the run's trained ``mobilenetv2`` stage — a meta-graph
    whose stem, head and ``mb3e6`` modules are trained — so the other modules learn beside a backbone that already
    classifies; or (``warm_start``) from another run's pre-trained meta-graph, e.g. a 32 px run's for 64 px.
    ``pretrain_optimizer``: SGD with Nesterov momentum and weight decay (the paper), or Adam at ``pretrain_lr``
    without weight decay, the optimiser that re-trains every network here in a few epochs.
    """

    name = "pretrain"
    setting_keys = ("pretrain_epochs", "pretrain_lr", "pretrain_batch", "momentum", "weight_decay", "final_drop_path",
                    "pretrain_schedule", "pretrain_init", "pretrain_optimizer", "warm_start")

    def __init__(self, trainer: Trainer, resume: bool):
        super().__init__(trainer, resume)
        config = self.config
        self.metagraph = trainer.new_metagraph()
        if not self.resumed and config.pretrain_init == "mobilenetv2":
            start = trainer.out / "mobilenetv2.pt"
            if not start.exists():
                raise CheckpointError(f"{trainer.out}: --pretrain-init mobilenetv2 needs stage mobilenetv2 first "
                                      "(no mobilenetv2.pt)")
            load_metagraph(self.metagraph, start)
        if not self.resumed and config.warm_start is not None:
            warm_start(self.metagraph, trainer, self.name)
        self.model = self.workers.wrap(self.metagraph)
        if config.pretrain_optimizer == "adam":
            self.optimizer = trainer.optimizer("adam", self.metagraph.parameters(), config.pretrain_lr)
        else:
            self.optimizer = trainer.optimizer("sgd", self.metagraph.parameters(), config.pretrain_lr,
                                               momentum=config.momentum, weight_decay=config.weight_decay,
                                               nesterov=True)
        if config.pretrain_schedule == "paper":
            milestones = [int(config.pretrain_epochs * 0.5), int(config.pretrain_epochs * 0.75)]
            self.schedule = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, milestones, 0.1)
        else:
            self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.pretrain_epochs)
        self._restore(metagraph=self.metagraph, optimizer=self.optimizer, schedule=self.schedule)

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

    def step(self, images: Tensor, labels: Tensor, rate: float, rng: np.random.Generator) -> tuple[Tensor, Tensor]:
        """One SGD step, each image on its own random child at drop rate ``rate``; the loss and which were right."""
        selection = self.children(len(images), rate, rng, images.device,
                                  spread=self.config.pretrain_schedule == "shrinking")
        return supervised_step(self.model, self.optimizer, images, labels, selection)

    def train_epoch(self, epoch: int) -> dict:
        rate = drop_path_rate(epoch, self.epochs, self.config.final_drop_path)
        spread = self.config.pretrain_schedule == "shrinking"
        loader = self.trainer.loader(self.trainer.train_set, self.config.pretrain_batch, train=True)
        rng = np.random.default_rng(self.epoch_seed(epoch))  # each worker draws children for its own images
        row = self.trainer.epoch(loader, epoch, "pretrain",
                                 lambda images, labels: self.step(images, labels, rate, rng), "train")
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
    setting_keys = ("search_epochs", "controller_lr", "metagraph_lr", "search_momentum", "search_weight_decay",
                    "search_batch", "reward", "alpha", "entropy_weight", "controller_input", "controller_width",
                    "controller_downsample", "reward_accuracy", "reward_correct",
                    "reward_wrong", "upper_start", "upper_end")

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
        self.controller_optimizer = trainer.optimizer("adam", self.controller.parameters(), config.controller_lr)
        self.metagraph_optimizer = trainer.optimizer("sgd", self.metagraph.parameters(), config.metagraph_lr,
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
                "reward": self.latency_reward.as_dict(), "controller_options": self.controller.options()}

    def _reward(self, images: Tensor, labels: Tensor, probabilities: Tensor, epoch: int) -> Callable:
        """The reward of ``self_critical_loss`` for one batch: eq. 2 with this search's latency reward."""
        price = self.latency_reward.pricer(self.table, probabilities, epoch, self.config.alpha)

        def reward(actions: Tensor, drawn: bool) -> tuple[Tensor, Tensor, Tensor]:
            selection = with_default_modules(actions)
            with torch.no_grad():
                logits = self.metagraph(images, selection)
            correct = logits.argmax(1) == labels
            right = (logits.softmax(1).gather(1, labels[:, None]).squeeze(1)
                     if self.config.reward_accuracy == "confidence" else correct)
            latency_reward, latency = price(selection, drawn)
            return (instance_reward(right, latency_reward, positive=self.config.reward_correct,
                                    negative=self.config.reward_wrong), correct, latency)

        return reward

    def controller_step(self, images: Tensor, labels: Tensor, epoch: int) -> tuple[Tensor, Tensor, Tensor]:
        """One policy-gradient step of the controller (meta-graph fixed): the loss, and which drawn children were
        right and their LUT latency."""
        config = self.config
        self.metagraph.eval()
        self.controller_model.train()
        probabilities = self.controller_model(images)
        reward = self._reward(images, labels, probabilities, epoch)
        loss, (_, correct, latency) = self_critical_loss(probabilities, reward, config.alpha, config.entropy_weight)
        self.controller_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.controller_optimizer.step()
        return loss.detach(), correct, latency

    def metagraph_step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One SGD step of the meta-graph (controller fixed) on the controller's drawn policies, shuffled in the
        batch: the loss, which images were right and their children's LUT latency."""
        self.controller.eval()
        with torch.no_grad():
            explore = encouraged(self.controller(images), self.config.alpha)
            actions = torch.bernoulli(explore)
            actions = actions[torch.randperm(len(actions), device=actions.device)]  # policy random shuffling
        loss, correct = supervised_step(self.metagraph_model, self.metagraph_optimizer, images, labels, actions)
        return loss, correct, lut_latency(self.table, with_default_modules(actions), self.mode)

    def train_epoch(self, epoch: int) -> dict:
        config = self.config
        trainer = self.trainer
        loader = trainer.loader(trainer.train_set, config.search_batch, train=True)
        row = {"upper_ms": self.latency_reward.bounds.upper(epoch), "lower_ms": self.latency_reward.bounds.lower}
        row |= trainer.epoch(loader, epoch, "search: controller",
                             lambda images, labels: self.controller_step(images, labels, epoch),
                             "controller")
        row |= trainer.epoch(loader, epoch, "search: meta-graph",
                             self.metagraph_step, "metagraph")
        self.controller.eval()
        row |= trainer.evaluate(self.metagraph, lambda images: deterministic_policy(self.controller(images)),
                                self.table, self.mode, recalibrate=True)
        if self.workers.main:
            snapshot = {"controller": self.controller.state_dict(), "metagraph": self.metagraph.state_dict(),
                        "epoch": epoch, "metrics": row, "resolution": trainer.resolution,
                        "controller_options": self.controller.options()}
            save_checkpoint(self.snapshots / f"epoch-{epoch:03d}.pt", snapshot)
        return row


class Retrain(Stage):
    """Train a network on fixed architectures with Adam and cosine annealing (paper §4.2's re-training).

    The network is a meta-graph run on the architectures ``choose(images)`` gives, or a static network (``choose``
    gives None).
    """

    state_key = "metagraph"
    setting_keys = ("finetune_epochs", "finetune_lr", "finetune_batch")

    def __init__(self, trainer: Trainer, resume: bool):
        super().__init__(trainer, resume)
        config = self.config
        self.network = self.build()
        self.model = self.workers.wrap(self.network)
        self.optimizer = trainer.optimizer("adam", self.network.parameters(), config.finetune_lr)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(config.finetune_epochs, 1))
        self._restore(**{self.state_key: self.network}, optimizer=self.optimizer, schedule=self.schedule)

    @property
    def epochs(self) -> int:
        return self.config.finetune_epochs

    def build(self) -> nn.Module:
        return self.trainer.new_metagraph()

    def choose(self, images: Tensor) -> Tensor | None:
        raise NotImplementedError

    def state(self) -> dict:
        return {self.state_key: self.network.state_dict(), "optimizer": self.optimizer.state_dict(),
                "schedule": self.schedule.state_dict()}

    def step(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """One Adam step on the architectures ``choose`` gives: the loss and which images were right."""
        with torch.no_grad():
            selection = self.choose(images)
        return supervised_step(self.model, self.optimizer, images, labels, selection)

    def train_epoch(self, epoch: int) -> dict:
        loader = self.trainer.loader(self.trainer.train_set, self.config.finetune_batch, train=True)
        row = self.trainer.epoch(loader, epoch, self.name, self.step, "train")
        self.schedule.step()
        return row | {"lr": self.schedule.get_last_lr()[0]} | self.trainer.evaluate(self.network, self.choose)


class Finetune(Retrain):
    """Fix a search snapshot's controller; train the meta-graph on the architectures it assigns (p > 0.5).

    The run's ``finetune`` stage re-trains the snapshot ``--snapshot`` names (default: the last); ``instanas compare``
    re-trains others, each as its own stage ``finetune-epoch-NNN`` (``epoch``) with the same recipe, or
    ``finetune-epoch-NNN-from-search`` when it starts from the snapshot's meta-graph (``from_scratch`` False).
    """

    name = "finetune"
    setting_keys = (*Retrain.setting_keys, "snapshot", "from_scratch")

    def __init__(self, trainer: Trainer, resume: bool, epoch: int | None = None):
        self.epoch_chosen = trainer.config.snapshot if epoch is None else epoch
        if epoch is not None:
            self.name = f"finetune-epoch-{epoch:03d}" + ("" if trainer.config.from_scratch else "-from-search")
        super().__init__(trainer, resume)
        self.snapshot = snapshot_path(trainer.out, self.epoch_chosen)
        chosen = load_checkpoint(self.snapshot)
        self.controller = trainer.place(saved_controller(self.resumed or chosen, trainer.resolution))
        self.controller.eval().requires_grad_(False)
        if not self.resumed and not self.config.from_scratch:
            self.network.load_state_dict(chosen["metagraph"])

    def stage_settings(self) -> dict:
        return super().stage_settings() | {"snapshot": self.epoch_chosen}

    def choose(self, images: Tensor) -> Tensor:
        return deterministic_policy(self.controller(images))

    def state(self) -> dict:
        return super().state() | {"controller": self.controller.state_dict(), "snapshot": self.snapshot.name,
                                  "controller_options": self.controller.options()}


class StaticRetrain(Retrain):
    """A network outside the meta-graph (a MobileNetV2 width, a torchvision reference) trained by the same recipe:
    one network for every image; subclasses give its ``name`` and ``build`` it."""

    state_key = "network"

    def choose(self, images: Tensor) -> None:
        return None


class MobileNetV2Baseline(Retrain):
    """The MobileNetV2-like architecture (``mb3e6`` in every cell), same recipe and epochs as fine-tuning; from
    scratch, or (``warm_start``) from another run's trained MobileNetV2, as InstaNAS's pre-training then starts."""

    name = "mobilenetv2"
    setting_keys = (*Retrain.setting_keys, "warm_start")

    def __init__(self, trainer: Trainer, resume: bool):
        super().__init__(trainer, resume)
        if not self.resumed and self.config.warm_start is not None:
            warm_start(self.network, trainer, self.name)

    def choose(self, images: Tensor) -> Tensor:
        return fixed_selection(mobilenetv2_architecture(), len(images), images.device)


def run_stage(stage: str, config: TrainConfig, out: Path, *, resume: bool = False, table=None,
              show_progress: bool = True, tensorboard: bool = True) -> list[dict]:
    """Run one stage in ``out`` (under ``torchrun``, on every worker); return its per-epoch metrics (also as
    TensorBoard scalars in ``out/tb/<stage>/`` with ``tensorboard``)."""
    if stage not in STAGES:
        raise CheckpointError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)})")
    torch.manual_seed(config.seed)
    with workers_for(config.device) as workers:
        trainer = Trainer(config, out, workers, show_progress=show_progress, tensorboard=tensorboard)
        if stage == "search":
            runner = Search(trainer, resume, table)
        else:
            kind = {"pretrain": Pretrain, "finetune": Finetune, "mobilenetv2": MobileNetV2Baseline}[stage]
            runner = kind(trainer, resume)
        return runner.run()

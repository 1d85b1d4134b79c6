"""Every hyper-parameter of a training run, and what each stage's checkpoint must agree with to resume.

No torch here: the CLI takes its defaults from :class:`TrainConfig` before it sets the allocator.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from instanas.controller import check_controller_input
from instanas.errors import ConfigError
from instanas.space import check_merge

STAGES = ("pretrain", "search", "finetune", "mobilenetv2")
PRETRAIN_SCHEDULES = ("shrinking", "paper")
PRETRAIN_INITS = ("scratch", "mobilenetv2")  # where pre-training starts: see Pretrain
PRETRAIN_OPTIMIZERS = ("sgd", "adam")  # the paper's SGD, or re-training's Adam: see Pretrain
# what checkpoints saved before a stage setting existed were trained with
SETTING_DEFAULTS = {"pretrain_optimizer": "sgd", "warm_start": None, "controller_input": "image",
                    "reward_accuracy": "correct", "controller_width": 1.0, "controller_downsample": 1}
REQUIRES = {"search": "pretrain", "finetune": "search"}
REWARDS = ("graded", "paper", "falling")  # the latency reward: see instanas.reward
REWARD_ACCURACIES = ("correct", "confidence")  # what the accuracy term reads: see instanas.reward.instance_reward
MEMORY_FORMATS = ("channels_last", "contiguous")  # how activations are laid out in training: see Trainer


def with_setting_defaults(saved: dict, keys) -> dict:
    """A checkpoint's ``saved`` settings, with each of ``keys`` it predates filled in as it was trained."""
    return {key: SETTING_DEFAULTS[key] for key in keys if key in SETTING_DEFAULTS} | saved


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``choices``; otherwise a one-line error naming ``what`` and the choices."""
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r} (choose from {', '.join(choices)})")
    return value


def check_reward(kind: str) -> str:
    return check_choice(kind, REWARDS, "reward")


@dataclass
class TrainConfig:
    """Every hyper-parameter is a CLI flag; defaults are the paper's and the authors' released scripts'."""

    dataset: str = "cifar10"
    data_dir: str | None = None
    resolution: int | None = None  # imagefolder's (32, 64 or 224); the named data sets have their own
    device: str = "cpu"
    workers: int = 2
    seed: int = 0
    limit_train: int | None = None  # quick runs: a fixed subset of the training split
    limit_val: int | None = None
    holdout: float = 0.1  # share of the training split no stage trains on: the one-shot baseline chooses on it
    cell_merge: str = "mean"  # how a cell merges its modules: "mean", or "sum" (the paper's); see instanas.metagraph
    memory_format: str = "channels_last"  # "contiguous": PyTorch's default layout, the plain path (slower on CPUs)
    fused_optimizer: bool = True  # Adam's and SGD's fused kernel; False: PyTorch's CPU default (see Trainer.optimizer)
    # stage 1: one-shot pre-training with drop-path
    pretrain_epochs: int = 164
    pretrain_lr: float = 0.1
    pretrain_batch: int = 64  # the authors' 32 is --pretrain-batch 32: see docs/training.md, "Training speed"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    final_drop_path: float = 0.5
    pretrain_schedule: str = "shrinking"  # "paper": one drop rate for all, step decay; see Pretrain
    pretrain_init: str = "scratch"  # "mobilenetv2": from the run's trained MobileNetV2 stage; see Pretrain
    pretrain_optimizer: str = "sgd"  # "adam": re-training's optimiser at --pretrain-lr; see Pretrain
    warm_start: str | None = None  # a run folder whose pretrain.pt / mobilenetv2.pt start those stages; see warm_start
    # stage 2: joint search
    search_epochs: int = 100
    controller_lr: float = 1e-3
    # the authors' script: plain SGD at the controller's lr 1e-3 (--metagraph-lr 0.001 --search-momentum 0), at which
    # the shared weights do not follow the sparser children the search moves to; see docs/training.md
    metagraph_lr: float = 0.01
    search_momentum: float = 0.9
    search_weight_decay: float = 0.0
    search_batch: int = 32
    reward: str = "graded"  # "paper": eq. 2 as published; "graded", "falling": see instanas.reward
    alpha: float = 0.8
    entropy_weight: float = 0.8
    controller_input: str = "image"  # "standardized": see instanas.controller
    controller_width: float = 1.0  # a multiplier of the controller's channels (capacity)
    controller_downsample: int = 1  # average-pools the controller's input by this factor (its input resolution)
    reward_accuracy: str = "correct"  # "confidence": the child's probability of the right class; see instance_reward
    reward_correct: float = 10.0
    reward_wrong: float = -10.0
    upper_start: float = 0.7
    upper_end: float = 0.5
    # stage 3: re-training a chosen policy (and the MobileNetV2 baseline)
    finetune_epochs: int = 200
    finetune_lr: float = 0.01
    finetune_batch: int = 64  # the authors' 32 is --finetune-batch 32: see docs/training.md, "Training speed"
    snapshot: int | None = None  # the search epoch whose controller to fine-tune (default: the last)
    from_scratch: bool = True

    def shared_settings(self) -> dict:
        """What a checkpoint of any stage must agree with to be resumed: the data and the cells."""
        values = asdict(self)
        return {key: values[key] for key in ("dataset", "seed", "limit_train", "limit_val", "cell_merge")}

    def settings(self, keys: tuple[str, ...]) -> dict:
        """What a checkpoint of a stage that reads ``keys`` must agree with to be resumed."""
        values = asdict(self)
        return self.shared_settings() | {key: values[key] for key in keys}

    def __post_init__(self) -> None:
        check_merge(self.cell_merge)
        check_reward(self.reward)
        check_controller_input(self.controller_input)
        check_choice(self.reward_accuracy, REWARD_ACCURACIES, "reward accuracy")
        check_choice(self.pretrain_schedule, PRETRAIN_SCHEDULES, "pre-training schedule")
        check_choice(self.pretrain_init, PRETRAIN_INITS, "pre-training start")
        check_choice(self.pretrain_optimizer, PRETRAIN_OPTIMIZERS, "pre-training optimizer")
        check_choice(self.memory_format, MEMORY_FORMATS, "memory format")
        if self.warm_start is not None and self.pretrain_init != "scratch":
            raise ConfigError(f"--warm-start and --pretrain-init {self.pretrain_init} both choose where pre-training "
                              "starts: give one")
        if not 0 <= self.holdout < 1:
            raise ConfigError(f"held-out share {self.holdout} must lie in [0, 1)")
        if not 0 <= self.final_drop_path < 1:
            raise ConfigError(f"final drop-path rate {self.final_drop_path} must lie in [0, 1)")

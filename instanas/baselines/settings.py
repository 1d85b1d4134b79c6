"""What ``instanas compare`` runs and how each baseline trains: plain dataclasses without torch, so that the CLI
takes its defaults from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from instanas.errors import InstaNASError

DEFAULT_METHODS = ("mobilenetv2", "smallest", "oneshot", "blockdrop", "convnet-aig", "instanas")
REFERENCE_METHODS = ("shufflenet_v2", "resnet")  # static networks outside the space (paper Tables 1-2): on request
METHODS = DEFAULT_METHODS + REFERENCE_METHODS
WIDTHS = (0.4, 1.0, 1.4)
SHUFFLENET_WIDTHS = (0.5, 1.0, 1.5)  # torchvision has 0.5, 1.0, 1.5 and 2.0
RESNET_DEPTHS = (18, 50)  # torchvision has 18, 34, 50, 101 and 152
TORCHVISION_SHUFFLENET_WIDTHS = (0.5, 1.0, 1.5, 2.0)
TORCHVISION_RESNET_DEPTHS = (18, 34, 50, 101, 152)
SNAPSHOT_CHOICES = ("spread", "all", "none")


@dataclass(frozen=True)
class BlockDropSettings:
    """The authors' ``cl_training.py`` (curriculum) and ``finetune.py`` (joint); epochs and batch are this project's
    (the README's Departures)."""

    curriculum_epochs: int = 10  # one more droppable cell per epoch; 10 cells can be dropped
    joint_epochs: int = 40
    lr: float = 1e-3
    joint_lr: float = 1e-4
    entropy_weight: float = 0.1
    penalty: float = -1.0  # γ, the reward of a wrong prediction during the curriculum
    joint_penalty: float = -5.0
    alpha: float = 0.8  # probability bounding: p' = α·p + (1 − α)(1 − p)
    batch: int = 32

    def checkpoint_settings(self) -> dict:
        """What a ``blockdrop.pt`` must agree with to be resumed (the key names checkpoints have always had)."""
        values = asdict(self)
        return {f"blockdrop_{key}": values[key] for key in ("curriculum_epochs", "joint_epochs", "lr", "joint_lr",
                                                            "entropy_weight", "penalty", "joint_penalty")} | {
            "alpha": self.alpha, "search_batch": self.batch}


@dataclass(frozen=True)
class ConvNetAIGSettings:
    """The authors' CIFAR ``train.py`` (target rate and loss weight, SGD, steps at 150 and 250 of 350 epochs); it starts
    here from the trained MobileNetV2 at a lower learning rate, for fewer epochs and at a smaller batch."""

    epochs: int = 40
    lr: float = 0.01  # SGD on the trained MobileNetV2 (ConvNet-AIG trains from scratch at 0.1)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    target: float = 0.6  # the fraction of images each gate should let through
    loss_weight: float = 2.0
    batch: int = 32

    def checkpoint_settings(self) -> dict:
        """What a ``convnet-aig.pt`` must agree with to be resumed (the key names checkpoints have always had)."""
        values = asdict(self)
        return {f"aig_{key}": values[key] for key in ("epochs", "lr", "weight_decay", "target", "loss_weight")} | {
            "momentum": self.momentum, "finetune_batch": self.batch}


@dataclass
class CompareOptions:
    methods: tuple[str, ...] = DEFAULT_METHODS
    widths: tuple[float, ...] = WIDTHS
    shufflenet_widths: tuple[float, ...] = SHUFFLENET_WIDTHS
    resnet_depths: tuple[int, ...] = RESNET_DEPTHS
    oneshot_samples: int = 300  # about 30 minutes of scoring on 2 cores at 32 px (5.7–7.2 s per child)
    retrain: bool = False  # re-train the one-shot frontier from scratch
    oneshot_retrain_points: int = 5  # one-shot frontier points re-trained, spread from the cheapest to the richest
    retrain_snapshots: str = "spread"  # InstaNAS search snapshots to re-train: spread, all, none or "0,5,19"
    # the paper re-trains each snapshot's policy from scratch with the recipe; the authors' released script fine-tunes
    # the search's meta-graph at a low rate instead: on cluttered MNIST 87.2 against 81.7 % (pretraining-cluttered/)
    instanas_from_search: bool = False
    instanas_search_lr: float = 0.001  # Adam's rate when fine-tuning from the search (0.01 erases its weights)
    measure: int = 5  # measure each point's N most frequent networks (0: LUT only)
    min_run_time: float = 0.2
    threads: int | None = None
    show_progress: bool = True
    tensorboard: bool = True  # each baseline's training epochs also as TensorBoard scalars in <run>/tb/<stage>/
    device: str = "cpu"
    blockdrop: BlockDropSettings = field(default_factory=BlockDropSettings)
    convnet_aig: ConvNetAIGSettings = field(default_factory=ConvNetAIGSettings)

    def __post_init__(self) -> None:
        unknown = [method for method in self.methods if method not in METHODS]
        if unknown:
            raise InstaNASError(f"unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})")
        if any(width <= 0 for width in self.widths):
            raise InstaNASError(f"--widths {','.join(f'{width:g}' for width in self.widths)}: widths must be positive")
        if unknown := [width for width in self.shufflenet_widths if width not in TORCHVISION_SHUFFLENET_WIDTHS]:
            raise InstaNASError(f"--shufflenet-widths: {unknown[0]:g} is not a ShuffleNet v2 width torchvision has "
                                f"(choose from {', '.join(f'{width:g}' for width in TORCHVISION_SHUFFLENET_WIDTHS)})")
        if unknown := [depth for depth in self.resnet_depths if depth not in TORCHVISION_RESNET_DEPTHS]:
            raise InstaNASError(f"--resnet-depths: {unknown[0]} is not a ResNet depth torchvision has "
                                f"(choose from {', '.join(map(str, TORCHVISION_RESNET_DEPTHS))})")
        parse_epochs(self.retrain_snapshots)


def parse_widths(text: str, option: str = "--widths", kind=float) -> tuple:
    """``--widths``: width multipliers like ``0.4,1.0,1.4`` (and ``--shufflenet-widths``, ``--resnet-depths``)."""
    try:
        return tuple(kind(value) for value in text.split(","))
    except ValueError:
        example = "0.4,1.0,1.4" if kind is float else "18,50"
        raise InstaNASError(f"{option} {text!r}: expected numbers like {example}") from None


def parse_epochs(text: str) -> list[int]:
    """``--retrain-snapshots``: spread, all, none (no list), or search epochs like ``0,5,19``."""
    if text in SNAPSHOT_CHOICES:
        return []
    try:
        epochs = sorted({int(value) for value in text.split(",")})
    except ValueError:
        epochs = [-1]
    if not epochs or epochs[0] < 0:
        raise InstaNASError(f"--retrain-snapshots {text!r}: expected spread, all, none or search epochs like 0,5,19")
    return epochs

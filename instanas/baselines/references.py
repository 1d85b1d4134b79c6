"""The paper's static references beside MobileNetV2 (Tables 1 and 2): ShuffleNet v2 at widths 0.5/1.0/1.5× and ResNet
18/50/101, torchvision's own model definitions, trained on the run's data with the re-training recipe.

At 224 px they are torchvision's networks unchanged. At 32 and 64 px they are adapted as CIFAR ports do: the stem's
convolution becomes 3×3 at stride 1 (ResNet: 7×7 at stride 2) and the max-pool after it is removed, so the first stage
sees the full image instead of a quarter of its side; nothing else changes (widths, blocks, strides of the stages,
the classifier's input). They lie outside the search space: their latency is measured, never estimated.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision import models

from instanas.baselines.settings import (
    RESNET_DEPTHS,
    SHUFFLENET_WIDTHS,
    TORCHVISION_RESNET_DEPTHS,
    TORCHVISION_SHUFFLENET_WIDTHS,
)
from instanas.batchnorm import recalibrate_batch_norm
from instanas.errors import InstaNASError
from instanas.metagraph import DEFAULT_NUM_CLASSES
from instanas.training.loop import Trainer
from instanas.training.stages import StaticRetrain


def reference_names(shufflenet_widths=SHUFFLENET_WIDTHS, resnet_depths=RESNET_DEPTHS) -> list[str]:
    """The networks' names, as ``export``, ``measure`` and the compare table spell them."""
    return [*(shufflenet_name(width) for width in shufflenet_widths), *(f"resnet{depth}" for depth in resnet_depths)]


def shufflenet_name(width: float) -> str:
    """torchvision's name: ``shufflenet_v2_x0_5`` for 0.5×, ``shufflenet_v2_x1_0`` for 1.0×."""
    return f"shufflenet_v2_x{width:.1f}".replace(".", "_")


# the settings' torch-free lists (the CLI checks its options against them) name torchvision's builders: one list
_SHUFFLENETS = {width: getattr(models, shufflenet_name(width)) for width in TORCHVISION_SHUFFLENET_WIDTHS}
_RESNETS = {depth: getattr(models, f"resnet{depth}") for depth in TORCHVISION_RESNET_DEPTHS}


def is_reference(text: str) -> bool:
    """Whether ``--arch`` names a network outside the space (an architecture string starts with a digit); a name
    that is neither is one line naming the choices."""
    if text[:1].isalpha():
        _constructor(text)
        return True
    return False


def _constructor(name: str):
    for width, constructor in _SHUFFLENETS.items():
        if name == shufflenet_name(width):
            return constructor
    for depth, constructor in _RESNETS.items():
        if name == f"resnet{depth}":
            return constructor
    raise InstaNASError(f"unknown network {name!r} (choose from {', '.join(reference_names(_SHUFFLENETS, _RESNETS))})")


def reference_network(name: str, resolution: int, num_classes: int) -> nn.Module:
    """torchvision's ``name`` with ``num_classes`` outputs, its stem adapted below 224 px (see the module's notes)."""
    network = _constructor(name)(weights=None, num_classes=num_classes)
    if resolution < 224:
        if name.startswith("resnet"):
            network.conv1 = nn.Conv2d(3, network.conv1.out_channels, 3, stride=1, padding=1, bias=False)
        else:
            first = network.conv1[0]
            network.conv1[0] = nn.Conv2d(3, first.out_channels, 3, stride=1, padding=1, bias=False)
        network.maxpool = nn.Identity()
    return network


def seeded_reference(name: str, resolution: int, seed: int = 0, num_classes: int | None = None) -> nn.Module:
    """``name`` with seeded random weights and batch-norm statistics of 32 random images, in eval mode: what
    ``export`` writes and ``measure`` times, like :func:`profiler.backends.seeded_child` for children."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        network = reference_network(name, resolution, num_classes or DEFAULT_NUM_CLASSES[resolution])
        recalibrate_batch_norm(network, [torch.randn(32, 3, resolution, resolution)])
    return network.eval()


class ReferenceBaseline(StaticRetrain):
    """One reference network trained as the run's MobileNetV2 widths are: the same recipe and epochs."""

    def __init__(self, trainer: Trainer, resume: bool, network: str):
        self.network_name = self.name = network
        _constructor(network)  # an unknown name fails before anything is built
        super().__init__(trainer, resume)

    def build(self) -> nn.Module:
        trainer = self.trainer
        return trainer.place(reference_network(self.network_name, trainer.resolution, trainer.info.num_classes))

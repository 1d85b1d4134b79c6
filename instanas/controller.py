"""The instance-aware controller (paper §3.3): a small, fast network that picks each image's child architecture.

A stem and basic residual blocks, global pooling and one linear layer give 85 sigmoid probabilities, one per (cell,
module). At 32 and 64 px: a 3×3 stem and three blocks of 16/32/64 channels (the authors' ``Policy32``). At 224 px:
a 2× average-pooled copy of the image through a 7×7 stride-2 stem with max-pooling, then four blocks of
16/32/64/128 channels (the authors' ``Policy224``), so it stays cheap beside the network it steers. The same policy
network, with one output per droppable cell, is BlockDrop's policy (:mod:`instanas.baselines`). Shortcuts that change
shape are 1×1 convolutions (``Policy32``'s ResNet pads channels with zeros instead).

Three options, none of which the paper has and none on by default, each an ablation of why the cluttered controller
did not spend more on cluttered images (docs/results/compare-cluttered/ablation-controller/): ``input_mode``
"standardized" first shifts and scales each image to zero mean and unit variance over its pixels (its latency
followed an image's ink, which rises with clutter; standardising takes out brightness and contrast but not the share
of ink); ``width`` multiplies every channel count (capacity); ``downsample`` average-pools the image by that factor
before the stem (the controller's input resolution).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from instanas.errors import ConfigError
from instanas.modules import ConvBNAct
from instanas.space import ARCH_SHAPE, NUM_CELLS, NUM_MODULES, controller_widths, with_default_modules


class BasicResidualBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 conv-BN projection) shortcut, as in ResNet."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(in_channels, out_channels, 3, stride),
            ConvBNAct(out_channels, out_channels, 3, activation_layer=None),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else ConvBNAct(in_channels, out_channels, 1, stride, activation_layer=None)
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


CONTROLLER_INPUTS = ("image", "standardized")


def check_controller_input(mode: str) -> str:
    if mode not in CONTROLLER_INPUTS:
        raise ConfigError(f"unknown controller input {mode!r} (choose from {', '.join(CONTROLLER_INPUTS)})")
    return mode


def standardized(images: Tensor) -> Tensor:
    """Each image at zero mean and unit variance over its channels and pixels: brightness and contrast taken out."""
    mean = images.mean((1, 2, 3), keepdim=True)
    return (images - mean) / images.std((1, 2, 3), keepdim=True).clamp(min=1e-5)


def check_controller_shape(resolution: int, width: float, downsample: int) -> None:
    if width <= 0 or downsample < 1 or resolution % downsample:
        raise ConfigError(f"controller width {width:g} must be positive and its downsampling {downsample} a whole "
                          f"divisor of {resolution} px")


class PolicyNetwork(nn.Module):
    """Maps a batch of images ``(B, 3, R, R)`` to ``outputs`` independent keep probabilities ``(B, outputs)``."""

    def __init__(self, resolution: int, outputs: int, input_mode: str = "image", width: float = 1.0,
                 downsample: int = 1):
        super().__init__()
        check_controller_shape(resolution, width, downsample)
        self.resolution = resolution
        self.input_mode = check_controller_input(input_mode)
        self.width, self.downsample = width, downsample
        widths = tuple(max(1, round(width * channels)) for channels in controller_widths(resolution))
        first = widths[0]
        self.shrink = nn.AvgPool2d(downsample) if downsample > 1 else nn.Identity()
        if resolution >= 224:
            self.stem = nn.Sequential(
                nn.AvgPool2d(2),
                ConvBNAct(3, first, 7, stride=2),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = ConvBNAct(3, first, 3)
        steps = (first, *widths)
        self.blocks = nn.Sequential(
            *(BasicResidualBlock(w_in, w_out, 1 if i == 0 else 2)
              for i, (w_in, w_out) in enumerate(zip(steps, steps[1:])))
        )
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.logits = nn.Linear(widths[-1], outputs)

    def forward(self, images: Tensor) -> Tensor:
        if self.input_mode == "standardized":
            images = standardized(images)
        return torch.sigmoid(self.logits(self.pool(self.blocks(self.stem(self.shrink(images))))))

    def options(self) -> dict:
        """What, beside the resolution, builds this network again: checkpoints record it."""
        return {"input_mode": self.input_mode, "width": self.width, "downsample": self.downsample}


class Controller(PolicyNetwork):
    """InstaNAS's controller: selection probabilities ``(B, 17, 5)``, one per (cell, module)."""

    def __init__(self, resolution: int, input_mode: str = "image", width: float = 1.0, downsample: int = 1):
        super().__init__(resolution, NUM_CELLS * NUM_MODULES, input_mode, width, downsample)

    def forward(self, images: Tensor) -> Tensor:
        return super().forward(images).view(-1, *ARCH_SHAPE)


def saved_controller(state: dict, resolution: int) -> Controller:
    """The controller a checkpoint holds (a search snapshot, ``finetune.pt``), built as it was trained (checkpoints
    saved before the width and downsampling options record only the input)."""
    options = state.get("controller_options", {"input_mode": state.get("controller_input", "image")})
    controller = Controller(resolution, **options)
    controller.load_state_dict(state["controller"])
    return controller


def deterministic_policy(probabilities: Tensor) -> Tensor:
    """The inference policy: every module with p > 0.5, plus ``basic`` where a required cell would be empty."""
    return with_default_modules(probabilities > 0.5)


def encouraged(probabilities: Tensor, alpha: float) -> Tensor:
    """The exploration distribution p' = α·p + (1 − α)·(1 − p): keeps every choice away from 0 and 1."""
    return alpha * probabilities + (1 - alpha) * (1 - probabilities)

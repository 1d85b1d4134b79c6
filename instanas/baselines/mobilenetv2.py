"""MobileNetV2 at a width multiplier, in the search space's layout (stem, 17 ``mb3e6`` cells, head) at each resolution.

Widths scale as torchvision's ``mobilenet_v2(width_mult=…)`` does: every width times the multiplier, rounded to a
multiple of 8, and the head's 1280 channels only ever grow. At 1.0× it is exactly the space's MobileNetV2-like child.
"""

from __future__ import annotations

from torch import Tensor, nn

from instanas.metagraph import Head, Stem
from instanas.modules import InvertedResidual
from instanas.space import HEAD_CHANNELS, STEM_CHANNELS, search_space
from instanas.training.loop import Trainer
from instanas.training.stages import StaticRetrain


def scaled(channels: int, width: float, divisor: int = 8) -> int:
    """``channels × width`` rounded to a multiple of ``divisor``, never below 90 % of the product (torchvision)."""
    value = channels * width
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ScaledMobileNetV2(nn.Module):
    """The static network; ``parts`` lists its pieces in order, each with the input shape it sees (for profiling)."""

    def __init__(self, resolution: int, width: float, num_classes: int):
        super().__init__()
        space = search_space(resolution)
        self.resolution, self.width = resolution, width
        channels = scaled(STEM_CHANNELS, width)
        self.stem = Stem(space.stem_stride, channels)
        cells, self.shapes = [], [(3, resolution)]
        for spec in space.cells:
            out = scaled(spec.out_channels, width)
            cells.append(InvertedResidual(channels, out, spec.stride, kernel=3, expansion=6))
            self.shapes.append((channels, spec.input_hw))
            channels = out
        self.cells = nn.Sequential(*cells)
        self.shapes.append((channels, space.final_hw))
        self.head = Head(channels, num_classes, scaled(HEAD_CHANNELS, max(width, 1.0)))  # the head only widens

    def parts(self) -> list[tuple[nn.Module, tuple[int, int]]]:
        """``(module, (channels, size))`` for the stem, each cell and the head."""
        return list(zip([self.stem, *self.cells, self.head], self.shapes))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.cells(self.stem(images)))


def stage_name(width: float) -> str:
    """1.0× is the training run's own ``mobilenetv2`` stage; the others are ``mobilenetv2-0.4x`` and the like."""
    return "mobilenetv2" if width == 1.0 else f"mobilenetv2-{width:g}x"


class WidthBaseline(StaticRetrain):
    """MobileNetV2 at ``width`` (≠ 1.0), the same recipe and epochs as the run's ``mobilenetv2`` stage."""

    def __init__(self, trainer: Trainer, resume: bool, width: float):
        self.width, self.name = width, stage_name(width)
        super().__init__(trainer, resume)

    def build(self) -> nn.Module:
        trainer = self.trainer
        return trainer.place(ScaledMobileNetV2(trainer.resolution, self.width, trainer.info.num_classes))

"""The five module options of a cell (paper Figure 3), as small plain ``nn.Module``s."""

from __future__ import annotations

from torch import Tensor, nn

from instanas.space import ModuleOption


class ConvBNAct(nn.Sequential):
    """Convolution ('same' padding, no bias) + batch-norm + optional activation.

    The same layer as torchvision's ``Conv2dNormActivation``; defined here because importing torchvision costs
    every CLI call about 2.5 s.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        activation_layer: type[nn.Module] | None = nn.ReLU,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 inverted bottleneck: 1×1 expand, k×k depthwise (carrying the stride), 1×1 linear projection.

    It adds its own identity shortcut when the stride is 1 and the widths match.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kernel: int, expansion: int):
        super().__init__()
        hidden = in_channels * expansion
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.body = nn.Sequential(
            ConvBNAct(in_channels, hidden, kernel_size=1, activation_layer=nn.ReLU),
            ConvBNAct(
                hidden, hidden, kernel_size=kernel, stride=stride, groups=hidden, activation_layer=nn.ReLU
            ),
            ConvBNAct(hidden, out_channels, kernel_size=1, activation_layer=None),
        )

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out + x if self.use_shortcut else out


class BasicConvBlock(nn.Module):
    """Basic convolution block: 3×3 conv (carrying the stride) + BN + ReLU, 3×3 conv + BN + ReLU6, no shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(in_channels, out_channels, kernel_size=3, stride=stride, activation_layer=nn.ReLU),
            ConvBNAct(out_channels, out_channels, kernel_size=3, activation_layer=nn.ReLU6),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


def build_module(option: ModuleOption, in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if option.is_inverted_residual:
        return InvertedResidual(in_channels, out_channels, stride, option.kernel, option.expansion)
    return BasicConvBlock(in_channels, out_channels, stride)

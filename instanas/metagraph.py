"""The weight-sharing meta-graph (paper §3.2) and the static child networks cut from it.

Two ways to run it:

* training mode, ``MetaGraph(x, selection)``: a different architecture per sample. Each module runs only on the
  samples that select it and its outputs are scattered back, so a module nobody in the batch selects costs nothing
  and batch-norm statistics come only from the samples that really use the module;
* deployment mode, ``MetaGraph.child(arch)``: an ``nn.Module`` that holds only the selected modules (sharing the
  meta-graph's weights). Every latency figure comes from such a child.

A cell merges its selected modules' outputs by their ``mean`` (the default) or their ``sum`` (the paper's, and the
authors' code). Every inverted bottleneck carries its own identity shortcut, so a summing cell with k modules
outputs about k·x: the scale of the activations multiplies from cell to cell with the number of modules chosen
(untrained, batch statistics: RMS 2.0, 50 and 142 after cell 9 with 1, 3 and 5 modules in every cell; 2.0, 1.2
and 0.7 with the mean), and one set of batch-norm statistics cannot serve sparse and dense children at once. The
mean keeps one scale whatever k is, at the cost of one multiplication per cell that selects two or more modules
(timed in the LUT with the sum).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from instanas.modules import ConvBNAct, build_module
from instanas.space import (
    ARCH_SHAPE,
    HEAD_CHANNELS,
    MODULE_OPTIONS,
    STEM_CHANNELS,
    CellSpec,
    check_merge,
    search_space,
    validate_architecture,
    with_default_modules,
)

DEFAULT_NUM_CLASSES = {32: 10, 64: 200, 224: 1000}


def memory_format_of(x: Tensor) -> torch.memory_format:
    """channels-last for an NHWC-strided batch, else contiguous (a tensor that is both counts as contiguous)."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def merge_outputs(outputs: list[Tensor], merge: str) -> Tensor:
    """A cell's output from its selected modules' outputs: k − 1 additions, then for ``mean`` one scaling by 1/k."""
    out = outputs[0]
    for other in outputs[1:]:
        out = out + other
    if merge == "mean" and len(outputs) > 1:
        out = out.mul_(1 / len(outputs))  # ``out`` is the fresh result of an addition: scaling it in place is safe
    return out


class OutputMerge(nn.Module):
    """The k-way merge of a cell's module outputs as a module of its own, exactly as a child cell computes it: what
    the profile times as a merge entry, and what an exported child runs between a cell's modules."""

    def __init__(self, merge: str):
        super().__init__()
        self.merge = merge

    def forward(self, outputs: tuple[Tensor, ...]) -> Tensor:
        return merge_outputs(list(outputs), self.merge)


class Stem(nn.Sequential):
    """3×3 convolution to 32 channels + BN + ReLU (stride 2 only at 224 px)."""

    def __init__(self, stride: int, channels: int = STEM_CHANNELS):
        super().__init__(ConvBNAct(3, channels, kernel_size=3, stride=stride, activation_layer=nn.ReLU))


class Head(nn.Sequential):
    """1×1 convolution to 1280 + BN + ReLU, global average pooling, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int = HEAD_CHANNELS):
        super().__init__(
            ConvBNAct(in_channels, channels, kernel_size=1, activation_layer=nn.ReLU),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Linear(channels, num_classes),
        )


class Cell(nn.Module):
    """All five module options of one cell; the output merges the selected modules' outputs (mean or sum)."""

    def __init__(self, spec: CellSpec, merge: str = "mean"):
        super().__init__()
        self.spec, self.merge = spec, check_merge(merge)
        self.options = nn.ModuleList(
            build_module(option, spec.in_channels, spec.out_channels, spec.stride) for option in MODULE_OPTIONS
        )

    def forward(self, x: Tensor, selection: Tensor) -> Tensor:
        """``selection``: ``(B, 5)`` booleans, already repaired so that a required cell selects something.

        The output keeps the input's memory format: ``index_select`` and an out-of-place ``index_add`` return
        channels-last rows contiguous, so rows are laid out again before their module and added back in place.
        """
        batch, layout = x.shape[0], memory_format_of(x)
        hw = self.spec.output_hw
        out = torch.empty(batch, self.spec.out_channels, hw, hw, dtype=x.dtype, device=x.device,
                          memory_format=layout).zero_()
        for module, chosen in zip(self.options, selection.unbind(1)):
            rows = chosen.nonzero().squeeze(1)
            if rows.numel() == batch:
                out = out + module(x)
            elif rows.numel():
                out = out.index_add_(0, rows, module(x.index_select(0, rows).contiguous(memory_format=layout)))
        if self.merge == "mean":
            out = out / selection.sum(1).clamp(min=1).to(out.dtype).view(-1, 1, 1, 1)
        if not self.spec.required:  # an empty optional cell is the identity
            skipped = (~selection.any(1)).nonzero().squeeze(1)
            if skipped.numel():
                out = out.index_add_(0, skipped, x.index_select(0, skipped))
        return out


class ChildCell(nn.Module):
    """The selected modules of one cell, and nothing else."""

    def __init__(self, modules: list[nn.Module], merge: str = "mean"):
        super().__init__()
        self.selected = nn.ModuleList(modules)
        self.merge = merge

    def forward(self, x: Tensor) -> Tensor:
        return merge_outputs([module(x) for module in self.selected], self.merge)


class ChildNetwork(nn.Module):
    """One architecture as a static network: stem, the non-empty cells, head. Shares weights with its meta-graph."""

    def __init__(self, arch: np.ndarray, resolution: int, stem: nn.Module, cells: list[ChildCell], head: nn.Module):
        super().__init__()
        self.arch = arch
        self.resolution = resolution
        self.stem = stem
        self.cells = nn.Sequential(*cells)
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.cells(self.stem(x)))


class MetaGraph(nn.Module):
    """Stem, 17 cells of five module options each, and the classifier head, at one input resolution."""

    def __init__(self, resolution: int, num_classes: int | None = None, merge: str = "mean"):
        super().__init__()
        self.space = search_space(resolution)
        self.resolution = resolution
        self.num_classes = num_classes or DEFAULT_NUM_CLASSES[resolution]
        self.merge = check_merge(merge)
        self.stem = Stem(self.space.stem_stride)
        self.cells = nn.ModuleList(Cell(spec, merge) for spec in self.space.cells)
        self.head = Head(self.space.cells[-1].out_channels, self.num_classes)

    def forward(self, x: Tensor, selection: Tensor | None = None) -> Tensor:
        """``selection``: ``(B, 17, 5)`` per-sample choices (bool or 0/1); ``None`` runs every module."""
        if selection is None:
            selection = torch.ones(x.shape[0], len(self.cells), len(MODULE_OPTIONS), dtype=torch.bool)
        selection = with_default_modules(selection.to(x.device))
        x = self.stem(x)
        for cell, cell_selection in zip(self.cells, selection.unbind(1)):
            x = cell(x, cell_selection)
        return self.head(x)

    def child(self, arch: np.ndarray) -> ChildNetwork:
        """The static network of ``arch``: only its selected modules exist in it, so only they run."""
        arch = validate_architecture(arch)
        cells = [
            ChildCell([module for module, chosen in zip(cell.options, row) if chosen], self.merge)
            for cell, row in zip(self.cells, arch)
            if row.any()
        ]
        child = ChildNetwork(arch, self.resolution, self.stem, cells, self.head)
        return child.train(self.training)


def fixed_selection(architecture: np.ndarray, count: int, device=None) -> Tensor:
    """One architecture for every image of a batch of ``count``: the ``(count, 17, 5)`` selection :class:`MetaGraph`
    takes in training mode."""
    return torch.as_tensor(architecture, device=device).unsqueeze(0).expand(count, *ARCH_SHAPE)

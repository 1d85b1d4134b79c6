"""The InstaNAS search space (paper §4.1): a MobileNetV2 backbone of 17 cells, five module options per cell.

An architecture is one value: a ``(17, 5)`` boolean array saying which module options each cell runs.
Batches are ``(N, 17, 5)`` arrays. Its text form is 17 five-character ``0``/``1`` tokens joined by ``-``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from instanas.errors import ArchitectureError, ConfigError, ResolutionError

RESOLUTIONS = (32, 64, 224)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
NUM_CELLS = 17


@dataclass(frozen=True)
class ModuleOption:
    """One of the five module choices of a cell (paper Figure 3)."""

    name: str
    kernel: int
    expansion: int | None  # None: basic convolution block, no expansion

    @property
    def is_inverted_residual(self) -> bool:
        return self.expansion is not None


# The order of the authors' released model; column i of an architecture array is MODULE_OPTIONS[i].
MODULE_OPTIONS = (
    ModuleOption("mb3e6", kernel=3, expansion=6),
    ModuleOption("mb3e3", kernel=3, expansion=3),
    ModuleOption("mb5e6", kernel=5, expansion=6),
    ModuleOption("mb5e3", kernel=5, expansion=3),
    ModuleOption("basic", kernel=3, expansion=None),
)
MODULE_NAMES = tuple(option.name for option in MODULE_OPTIONS)
NUM_MODULES = len(MODULE_OPTIONS)
DEFAULT_MODULE = MODULE_NAMES.index("basic")  # the paper's "module (a) in default" for cells that need one

# MobileNetV2's (width, repeats) per stage; the first cell of a stage carries the stage's stride.
_STAGES = ((16, 1), (24, 2), (32, 3), (64, 4), (96, 3), (160, 3), (320, 1))
_FIRST_STRIDES = {32: (1, 1, 2, 2, 1, 2, 1), 64: (1, 2, 2, 2, 1, 2, 1), 224: (1, 2, 2, 2, 1, 2, 1)}
_STEM_STRIDES = {32: 1, 64: 1, 224: 2}


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded convolution with odd kernel and this stride."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class CellSpec:
    """Where a cell sits in the network at one resolution: the shapes every module of the cell sees."""

    index: int
    input_hw: int
    in_channels: int
    out_channels: int
    stride: int

    @property
    def output_hw(self) -> int:
        return _conv_out(self.input_hw, self.stride)

    @property
    def required(self) -> bool:
        """A cell that changes shape cannot be the identity, so it must run at least one module."""
        return self.stride != 1 or self.in_channels != self.out_channels


@dataclass(frozen=True)
class SearchSpace:
    """The cell table at one input resolution."""

    resolution: int
    stem_stride: int
    cells: tuple[CellSpec, ...]

    @property
    def stem_output_hw(self) -> int:
        return _conv_out(self.resolution, self.stem_stride)

    @property
    def final_hw(self) -> int:
        return self.cells[-1].output_hw

    @property
    def required_cells(self) -> np.ndarray:
        return np.array([cell.required for cell in self.cells])

    @property
    def num_architectures(self) -> int:
        """Exact count: a required cell has 2^5 - 1 non-empty subsets, any other cell all 2^5."""
        subsets = 2**NUM_MODULES
        return math.prod(subsets - 1 if cell.required else subsets for cell in self.cells)


@functools.cache
def search_space(resolution: int) -> SearchSpace:
    """The search space at ``resolution`` (32 CIFAR, 64 TinyImageNet, 224 ImageNet)."""
    if resolution not in RESOLUTIONS:
        supported = ", ".join(map(str, RESOLUTIONS))
        raise ResolutionError(f"resolution {resolution} is not supported (choose one of {supported})")
    cells = []
    hw = _conv_out(resolution, _STEM_STRIDES[resolution])
    in_channels = STEM_CHANNELS
    for (width, repeats), first_stride in zip(_STAGES, _FIRST_STRIDES[resolution]):
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            cells.append(CellSpec(len(cells), hw, in_channels, width, stride))
            hw, in_channels = _conv_out(hw, stride), width
    return SearchSpace(resolution, _STEM_STRIDES[resolution], tuple(cells))


# The first cell of every stage changes width, so the required cells are the same at every resolution.
REQUIRED_CELLS = search_space(32).required_cells
REQUIRED_CELLS.setflags(write=False)
CELL_MERGES = ("mean", "sum")  # how a cell merges its selected modules' outputs (see instanas.metagraph)


def check_merge(merge: str) -> str:
    if merge not in CELL_MERGES:
        raise ConfigError(f"unknown cell merge {merge!r} (choose from {', '.join(CELL_MERGES)})")
    return merge


ARCH_SHAPE = (NUM_CELLS, NUM_MODULES)


def validate_architecture(arch: np.ndarray) -> np.ndarray:
    """Return ``arch`` as a boolean ``(17, 5)`` array, or raise naming the first offending cell."""
    arch = np.asarray(arch)
    if arch.shape != ARCH_SHAPE:
        raise ArchitectureError(f"an architecture is a {ARCH_SHAPE} selection, got shape {arch.shape}")
    if arch.dtype != bool:
        if not np.isin(arch, (0, 1)).all():
            raise ArchitectureError("an architecture selection may only hold 0/1 values")
        arch = arch.astype(bool)
    empty_required = np.flatnonzero(REQUIRED_CELLS & ~arch.any(axis=1))
    if empty_required.size:
        raise ArchitectureError(f"cell {empty_required[0]} needs at least one module")
    return arch


def parse_architecture(text: str) -> np.ndarray:
    """Parse ``'00001-01100-…'`` (17 tokens) into a validated ``(17, 5)`` boolean array."""
    tokens = text.strip().split("-")
    if len(tokens) != NUM_CELLS:
        raise ArchitectureError(
            f"architecture {text!r} has {len(tokens)} cell tokens; expected {NUM_CELLS} tokens of "
            f"{NUM_MODULES} 0/1 characters joined by '-'"
        )
    for index, token in enumerate(tokens):
        if len(token) != NUM_MODULES or set(token) - {"0", "1"}:
            raise ArchitectureError(f"cell {index} token {token!r} must be {NUM_MODULES} characters of 0/1")
    arch = np.array([[char == "1" for char in token] for token in tokens])
    return validate_architecture(arch)


def format_architecture(arch: np.ndarray) -> str:
    """The text form of one architecture; inverse of :func:`parse_architecture`."""
    arch = validate_architecture(arch)
    return "-".join("".join("1" if bit else "0" for bit in cell) for cell in arch)


def with_default_modules(selection):
    """Controller-facing repair: a required cell that selects nothing runs ``basic`` (paper §4.1).

    Works on numpy arrays and torch tensors of shape ``(..., 17, 5)``; returns a new object.
    """
    required = REQUIRED_CELLS
    if not isinstance(selection, np.ndarray):  # a torch tensor: keep its device
        import torch

        required = torch.tensor(REQUIRED_CELLS, device=selection.device)
        repaired = selection.bool().clone()
    else:
        repaired = selection.astype(bool)  # astype copies
    repaired[..., DEFAULT_MODULE] |= required & ~repaired.any(-1)
    return repaired


def full_architecture() -> np.ndarray:
    """Every module of every cell: the whole meta-graph."""
    return np.ones(ARCH_SHAPE, dtype=bool)


def smallest_architecture() -> np.ndarray:
    """The fewest modules a valid child can run: ``basic`` in each required cell, every other cell skipped."""
    return with_default_modules(np.zeros(ARCH_SHAPE, dtype=bool))


def mobilenetv2_architecture() -> np.ndarray:
    """``mb3e6`` in every cell: the MobileNetV2-like member of the space."""
    arch = np.zeros(ARCH_SHAPE, dtype=bool)
    arch[:, MODULE_NAMES.index("mb3e6")] = True
    return arch


def edge_architectures(seed: int = 0, samples: int = 3) -> list[tuple[str, np.ndarray]]:
    """Named architectures at the edges of the space, where a calibration fitted on sampled children may not reach.

    The smallest network, the full meta-graph, each module type alone in every cell, and ``samples`` very sparse
    (keep 0.05) and very dense (keep 0.95) children.
    """
    edges = [("smallest", smallest_architecture()), ("full", full_architecture())]
    for index, name in enumerate(MODULE_NAMES):
        arch = np.zeros(ARCH_SHAPE, dtype=bool)
        arch[:, index] = True
        edges.append((f"{name} in every cell", arch))
    for keep, label in ((0.05, "sparse"), (0.95, "dense")):
        for number, arch in enumerate(sample_architectures(samples, keep=keep, seed=1000 * seed + int(keep * 100))):
            edges.append((f"{label} {number + 1} (keep {keep})", arch))
    return edges


def correlation_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` architectures from cheap to rich, and the keep probability each was drawn with (uniform in [0.05, 0.95]):
    the children `correlate` and `calibrate` measure and `lut diff` compares."""
    rng = np.random.default_rng(seed)
    keep = rng.uniform(0.05, 0.95, n)
    return sample_architectures(n, keep=keep, seed=int(rng.integers(2**32))), keep


def few_kind_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    """``n`` architectures that each use only one or two module kinds (chosen per child), their keep probability
    (uniform in [0.05, 0.95] for the chosen kinds) and the kinds.

    Random children almost never run one kind in many consecutive cells; networks that do (``mb3e3`` or ``basic``
    in every cell) ran 7–8 % faster than a calibration fitted without such children said
    (``docs/results/validation-noise/few-kinds/``), so `calibrate` mixes a share of these in.
    """
    rng = np.random.default_rng(seed)
    keep = rng.uniform(0.05, 0.95, n)
    kinds = [tuple(sorted(rng.choice(NUM_MODULES, size=rng.integers(1, 3), replace=False))) for _ in range(n)]
    per_kind = np.zeros((n, NUM_MODULES))
    for row, chosen in enumerate(kinds):
        per_kind[row, list(chosen)] = keep[row]
    archs = sample_architectures(n, keep=per_kind, seed=int(rng.integers(2**32)))
    return archs, keep, [tuple(MODULE_NAMES[kind] for kind in chosen) for chosen in kinds]


def sample_architectures(n: int, keep: float | np.ndarray = 0.5, seed: int | None = None) -> np.ndarray:
    """``n`` valid architectures ``(n, 17, 5)``: each module kept with probability ``keep``.

    ``keep`` may be one probability per sample, so one batch can span cheap to rich networks, or ``(n, 5)``: one
    per sample and module kind (0 never keeps that kind). A required cell that comes out empty is drawn again (not
    filled with the default), so every non-empty subset stays as likely as the keep probabilities make it.
    """
    if n < 0:
        raise ArchitectureError(f"the number of architectures must be >= 0, got {n}")
    keep = np.asarray(keep, dtype=float)
    per_kind = np.broadcast_to(keep[..., None] if keep.ndim < 2 else keep, (n, NUM_MODULES))
    if not (((per_kind >= 0) & (per_kind <= 1)).all() and (per_kind.max(axis=1, initial=0) > 0).all()):
        raise ArchitectureError("keep probabilities must lie in (0, 1] (per kind: in [0, 1], one above 0)")
    rng = np.random.default_rng(seed)
    probabilities = per_kind[:, None, :]
    archs = rng.random((n, *ARCH_SHAPE)) < probabilities
    while True:
        redraw = REQUIRED_CELLS & ~archs.any(axis=2)  # (n, 17)
        if not redraw.any():
            return archs
        rows, cells = np.nonzero(redraw)
        archs[rows, cells] = rng.random((rows.size, NUM_MODULES)) < per_kind[rows]


def kind_repeats(archs: np.ndarray) -> np.ndarray:
    """``(N, 5)``: how often each module kind runs right after itself, in the order a child executes its modules
    (cell by cell, options in column order). ``basic`` in every cell: 16 repeats of ``basic``."""
    archs = np.asarray(archs, dtype=bool)
    executed = archs.reshape(len(archs), -1)  # (cell, option) slots in execution order
    slots = np.arange(executed.shape[1])
    last = np.maximum.accumulate(np.where(executed, slots, -1), axis=1)  # the latest executed slot so far
    previous = np.hstack([np.full((len(archs), 1), -1), last[:, :-1]])  # the slot executed before each
    kind = slots % NUM_MODULES
    repeated = executed & (previous >= 0) & (kind[previous] == kind)
    return repeated.reshape(archs.shape).sum(axis=1).astype(float)


# The parts an architecture executes, named as the latency table names its entries: the stem, each selected
# module, one k-way sum in every cell that selects k >= 2 modules, and the head.
MAX_MERGED = NUM_MODULES


def module_key(cell: int, module: str) -> str:
    return f"cell{cell:02d}.{module}"


def merge_key(cell: int, merged: int) -> str:
    return f"cell{cell:02d}.sum{merged}"


CONTROLLER_KEY = "controller"  # the table also times the controller, which runs once per image
LEGACY_CONTROLLER = "blocks 16-32-64"  # what every table timed before its controller entry named the controller


def controller_widths(resolution: int) -> tuple[int, ...]:
    """The channels of the controller's residual blocks (:mod:`instanas.controller`): the authors' ``Policy32``
    below 224 px, their ``Policy224`` at 224 px."""
    return (16, 32, 64, 128) if resolution >= 224 else (16, 32, 64)


def controller_signature(resolution: int) -> str:
    """What the LUT records with the controller's entry, so that a table timed with another controller is refused."""
    return "blocks " + "-".join(str(width) for width in controller_widths(resolution))


def entry_keys() -> list[str]:
    """Every entry an architecture's estimate draws on, in network order (a table also holds the controller's)."""
    keys = ["stem"]
    for cell in range(NUM_CELLS):
        keys += [module_key(cell, name) for name in MODULE_NAMES]
        keys += [merge_key(cell, merged) for merged in range(2, MAX_MERGED + 1)]
    return keys + ["head"]


def profiled_keys() -> list[str]:
    """Every entry ``instanas profile`` measures: the architecture's entries, then the controller."""
    return [*entry_keys(), CONTROLLER_KEY]

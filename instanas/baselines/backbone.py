"""The trained MobileNetV2 1.0× that BlockDrop and ConvNet-AIG drop cells of, as selections of the meta-graph."""


from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from instanas.space import MODULE_NAMES, REQUIRED_CELLS

DROPPABLE_CELLS = np.flatnonzero(~REQUIRED_CELLS)  # residual cells: same shape in and out, so they can be skipped
_REQUIRED = np.flatnonzero(REQUIRED_CELLS)
BACKBONE_MODULE = MODULE_NAMES.index("mb3e6")


def backbone_selection(keep: Tensor) -> Tensor:
    """``(B, 17, 5)`` selections of MobileNetV2 with the droppable cells ``keep`` ``(B, len(DROPPABLE_CELLS))`` says."""
    selection = torch.zeros(len(keep), len(REQUIRED_CELLS), len(MODULE_NAMES), dtype=torch.bool, device=keep.device)
    selection[:, _REQUIRED, BACKBONE_MODULE] = True
    selection[:, DROPPABLE_CELLS, BACKBONE_MODULE] = keep.bool()
    return selection

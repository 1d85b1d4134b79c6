"""The paper's baselines (Table 1/2, Figure 6), all inside the MobileNetV2 search space and priced by the same LUT.

* :mod:`.mobilenetv2` — MobileNetV2 at width 0.4×, 1.0×, 1.4×, trained with InstaNAS's re-training recipe;
* :mod:`.oneshot` — one-shot NAS (Bender et al., 2018): architectures sampled from the pre-trained meta-graph,
  scored with its shared weights, the accuracy–latency Pareto frontier kept;
* :mod:`.blockdrop` — BlockDrop (Wu et al., 2018): a policy network drops residual cells of a trained MobileNetV2;
* :mod:`.convnet_aig` — ConvNet-AIG (Veit & Belongie, 2018): a Gumbel-softmax gate before every residual cell.

BlockDrop and ConvNet-AIG run on the trained MobileNetV2 1.0× of the space (``mb3e6`` in every cell, the run's
``mobilenetv2`` stage). A dropped cell is an empty cell of the meta-graph: the identity, its module never runs.
"""

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

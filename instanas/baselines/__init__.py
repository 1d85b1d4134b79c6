"""The paper's baselines (Table 1/2, Figure 6), all inside the MobileNetV2 search space and priced by the same LUT.

* :mod:`.mobilenetv2` — MobileNetV2 at width 0.4×, 1.0×, 1.4×, trained with InstaNAS's re-training recipe;
* :mod:`.oneshot` — one-shot NAS (Bender et al., 2018): architectures sampled from the pre-trained meta-graph,
  scored with its shared weights, the accuracy–latency Pareto frontier kept;
* :mod:`.blockdrop` — BlockDrop (Wu et al., 2018): a policy network drops residual cells of a trained MobileNetV2;
* :mod:`.convnet_aig` — ConvNet-AIG (Veit & Belongie, 2018): a Gumbel-softmax gate before every residual cell.

BlockDrop and ConvNet-AIG run on the trained MobileNetV2 1.0× of the space (``mb3e6`` in every cell, the run's
``mobilenetv2`` stage, :mod:`.backbone`). A dropped cell is an empty cell of the meta-graph: the identity, its
module never runs. Their settings, and ``instanas compare``'s, are in :mod:`.settings` (no torch there: the CLI
takes its defaults from them).
"""

"""InstaNAS training (paper §3.1–3.3, §4.2): pre-train the meta-graph, search the controller, fine-tune a policy.

A run folder holds one checkpoint per stage (``<stage>.pt``, rewritten atomically after every epoch, so an interrupted
stage resumes from its last finished epoch), the search's controller snapshots (``snapshots/epoch-NNN.pt``: the
accuracy–latency frontier of one search), and ``metrics-<stage>.csv``. Each stage runs alone and reads what the stage
before it left. The ``mobilenetv2`` stage trains the MobileNetV2-like architecture of the same space with the
fine-tuning recipe and epochs: the baseline at the same budget.

Under ``torchrun`` every stage runs data-parallel (DistributedDataParallel; gloo on CPU, NCCL on CUDA); rank 0 alone
writes files and shows progress.
"""

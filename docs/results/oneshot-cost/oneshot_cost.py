"""What one-shot scoring costs per child on this CPU (the README's figure behind ``--oneshot-samples 300``).

The cost does not depend on the weights, so a seeded meta-graph and random images of the digits run's sizes stand in
for a trained run: 256 images re-estimate each child's batch norm, 144 held-out images are scored twice (recalibrated
and with the shared statistics), as ``instanas compare`` does.

Usage (repository root, an otherwise idle machine): python docs/results/oneshot-cost/oneshot_cost.py 16
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from instanas.baselines.oneshot import BN_BATCHES, score_architectures
from instanas.metagraph import MetaGraph
from lut.table import LatencyTable

torch.manual_seed(0)
metagraph = MetaGraph(32, num_classes=10)
table = LatencyTable.from_dict(json.loads(Path("docs/results/xeon/correlate-32/res32-v2.json").read_text()))
bn_images = [torch.randn(64, 3, 32, 32) for _ in range(BN_BATCHES)]
held_out = [(torch.randn(144, 3, 32, 32), torch.randint(0, 10, (144,)))]
began = time.perf_counter()
scores = score_architectures(metagraph, bn_images, held_out, table, samples=int(sys.argv[1]), seed=0,
                             journal_path=Path(tempfile.mkdtemp()) / "oneshot.csv", resume=False, show_progress=False)
print(f"{(time.perf_counter() - began) / len(scores):.2f} s per child ({torch.get_num_threads()} threads); "
      f"by keep probability: {scores.groupby(scores.keep.round(1)).wall_s.mean().round(2).to_dict()}")

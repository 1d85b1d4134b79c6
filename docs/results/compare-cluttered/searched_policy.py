"""The architectures a searched controller gives the validation images, and how many images each: the policy the
bench's fine-tuning step trains on (``bench/searched-policy.json``).

Fine-tuning re-trains the meta-graph on a searched snapshot's policy — a few architectures shared by many images —
while an untrained controller gives nearly every image its own; the two steps cost differently (see
``docs/results/training-speed/``), so the bench times the shape fine-tuning really sees.

    python docs/results/compare-cluttered/searched_policy.py RUN [--epoch N] > bench/searched-policy.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from instanas.ablation import snapshot_policies
from instanas.evaluate import validation_images
from instanas.space import format_architecture
from instanas.training.checkpoints import read_run


def main(run: Path, epoch: int | None) -> None:
    settings = read_run(run)
    images = torch.cat([batch for batch, _ in DataLoader(validation_images(settings), batch_size=500)])
    policies = dict(snapshot_policies(run, images))
    chosen = max(policies) if epoch is None else epoch
    counts = Counter(format_architecture(arch) for arch in policies[chosen])
    source = (f"{settings['dataset']} at {settings['resolution']} px, search snapshot {chosen}'s greedy policy on the "
              f"{len(images)} validation images (docs/results/compare-cluttered/searched_policy.py)")
    entries = ",\n".join(f"  {json.dumps({'arch': arch, 'images': count})}" for arch, count in counts.most_common())
    print(f'{{"source": {json.dumps(source)},\n "architectures": [\n{entries}\n ]}}')


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder with search snapshots")
    parser.add_argument("--epoch", type=int, help="the snapshot (default: the last)")
    arguments = parser.parse_args()
    main(arguments.run, arguments.epoch)

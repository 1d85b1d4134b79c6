"""How a backend's LUT differs from eager PyTorch's on the same machine: each kind of entry's ratio (backend ms /
eager ms), and the three reference children's estimates.

    python docs/results/backends/lut_vs_eager.py EAGER.json BACKEND.json [BACKEND2.json …] > docs/results/backends/lut_vs_eager.md
"""

import sys

import numpy as np
import pandas as pd

from instanas.space import full_architecture, mobilenetv2_architecture, search_space, smallest_architecture
from lut.store import load_table

CHILDREN = {"MobileNetV2-like": mobilenetv2_architecture(), "full meta-graph": full_architecture(),
            "smallest": smallest_architecture()}


def groups(table) -> pd.Series:
    """Each entry's group: stem, head, controller, a module type at a feature-map size, or the merges."""
    cells = search_space(table.resolution).cells
    names = []
    for row in table.entries.itertuples():
        if row.kind == "module":
            names.append(f"{row.module} at {cells[int(row.cell)].input_hw} px")
        elif row.kind == "merge":
            names.append("merges (k = 2…5)")
        else:
            names.append(row.kind)
    return pd.Series(names, index=table.entries["key"])


eager, *others = (load_table(path) for path in sys.argv[1:])
base = eager.entries.set_index("key")["median_ms"]
kinds = groups(eager)
print("| entries | eager (ms, median) | " + " | ".join(f"{t.backend} / eager (median, range)" for t in others) + " |")
print("|---" * (2 + len(others)) + "|")
for name in dict.fromkeys(kinds):
    keys = kinds.index[kinds == name]
    cells = []
    for table in others:
        ratio = table.entries.set_index("key")["median_ms"][keys] / base[keys]
        cells.append(f"{np.median(ratio):.2f}× ({ratio.min():.2f}–{ratio.max():.2f})")
    print(f"| {name} ({len(keys)}) | {np.median(base[keys]):.4f} | " + " | ".join(cells) + " |")
print("\n| child | eager plain / calibrated (ms) | " + " | ".join(f"{t.backend} plain / calibrated (ms)" for t in others)
      + " |")
print("|---" * (2 + len(others)) + "|")
for name, arch in CHILDREN.items():
    print(f"| {name} | " + " | ".join(f"{t.estimate(arch, 'plain'):.2f} / {t.estimate(arch, 'calibrated'):.2f}"
                                      for t in (eager, *others)) + " |")
print("\nAnchor (the reference network's latency in the profile): "
      + ", ".join(f"{t.backend} {t.anchor_ms:.3f} ms" for t in (eager, *others)) + ".")

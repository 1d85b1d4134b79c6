"""Where InstaNAS's re-trained points stand against each baseline point of a ``compare`` table.

For every baseline point (MobileNetV2 widths, the space's smallest architecture, re-trained one-shot frontier points,
BlockDrop, ConvNet-AIG, and the torchvision references ShuffleNet v2 and ResNet when the table has them) this prints
the InstaNAS re-trained point that is most accurate at no more latency, and the fastest one at no less accuracy;
"dominated" when one InstaNAS point is both. Latency is the LUT's milliseconds, or the measured ones when any point
lies outside the search space (no LUT estimate), as the frontier plot does.

    python docs/results/compare-digits/standing.py docs/results/compare-digits/table.csv \
        > docs/results/compare-digits/standing.md
"""

import sys

import pandas as pd

BASELINES = {"mobilenetv2": "MobileNetV2", "smallest": "the smallest architecture", "oneshot-retrained": "one-shot (re-trained)", "blockdrop": "BlockDrop",
             "convnet-aig": "ConvNet-AIG", "shufflenet_v2": "ShuffleNet v2", "resnet": "ResNet"}


def _milliseconds(row) -> str:
    lut = "—" if pd.isna(row["lut_ms_mean"]) else f"{row['lut_ms_mean']:.2f}"
    return f"{lut} ms LUT / {row['measured_ms_mean']:.2f} ms measured"


def _point(row) -> str:
    return f"{row['point']}: {100 * row['accuracy']:.2f} %, {_milliseconds(row)}"


def latency_column(table: pd.DataFrame) -> str:
    """The LUT's estimate, or the measurement when any point has no estimate (a network outside the space)."""
    return "measured_ms_mean" if table["lut_ms_mean"].isna().any() else "lut_ms_mean"


def standing(table: pd.DataFrame) -> pd.DataFrame:
    latency = latency_column(table)
    instanas = table[table["method"] == "instanas"]
    rows = []
    for method, name in BASELINES.items():
        for _, base in table[table["method"] == method].iterrows():
            faster = instanas[instanas[latency] <= base[latency]]
            as_good = instanas[instanas["accuracy"] >= base["accuracy"]]
            best = faster.loc[faster["accuracy"].idxmax()] if len(faster) else None
            cheapest = as_good.loc[as_good[latency].idxmin()] if len(as_good) else None
            dominated = best is not None and best["accuracy"] >= base["accuracy"]
            rows.append({
                "baseline": f"{name} {base['point']}",
                "baseline point": f"{100 * base['accuracy']:.2f} %, {_milliseconds(base)}",
                f"InstaNAS, most accurate at ≤ its {'measured' if latency == 'measured_ms_mean' else 'LUT'} latency":
                    "none" if best is None else _point(best),
                "InstaNAS, fastest at ≥ its accuracy": "none" if cheapest is None else _point(cheapest),
                "dominated": "yes" if dominated else "no",
            })
    return pd.DataFrame(rows)


if __name__ == "__main__":
    table = pd.read_csv(sys.argv[1])
    frame = standing(table)
    basis = "measured" if latency_column(table) == "measured_ms_mean" else "the LUT's"
    print("InstaNAS (re-trained snapshots) against each baseline point; latency LUT / measured, controller and "
          f"policies included; compared on {basis} latency.\n")
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(str(value) for value in row) + " |")

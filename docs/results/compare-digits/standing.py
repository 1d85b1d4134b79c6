"""Where InstaNAS's re-trained points stand against each baseline point of a ``compare`` table.

For every baseline point (MobileNetV2 widths, re-trained one-shot frontier points, BlockDrop, ConvNet-AIG) this
prints the InstaNAS re-trained point that is most accurate at no more latency, and the fastest one at no less
accuracy, in the LUT's milliseconds and measured; "dominates" when one InstaNAS point is both.

    python docs/results/compare-digits/standing.py docs/results/compare-digits/table.csv \
        > docs/results/compare-digits/standing.md
"""

import sys

import pandas as pd

BASELINES = {"mobilenetv2": "MobileNetV2", "oneshot-retrained": "one-shot (re-trained)", "blockdrop": "BlockDrop",
             "convnet-aig": "ConvNet-AIG"}


def _point(row) -> str:
    return (f"{row['point']}: {100 * row['accuracy']:.2f} %, {row['lut_ms_mean']:.2f} ms LUT / "
            f"{row['measured_ms_mean']:.2f} ms measured")


def standing(table: pd.DataFrame) -> pd.DataFrame:
    instanas = table[table["method"] == "instanas"]
    rows = []
    for method, name in BASELINES.items():
        for _, base in table[table["method"] == method].iterrows():
            faster = instanas[instanas["lut_ms_mean"] <= base["lut_ms_mean"]]
            as_good = instanas[instanas["accuracy"] >= base["accuracy"]]
            best = faster.loc[faster["accuracy"].idxmax()] if len(faster) else None
            cheapest = as_good.loc[as_good["lut_ms_mean"].idxmin()] if len(as_good) else None
            dominated = best is not None and best["accuracy"] >= base["accuracy"]
            rows.append({
                "baseline": f"{name} {base['point']}",
                "baseline point": f"{100 * base['accuracy']:.2f} %, {base['lut_ms_mean']:.2f} / "
                                  f"{base['measured_ms_mean']:.2f} ms",
                "InstaNAS, most accurate at ≤ its LUT latency": "none" if best is None else _point(best),
                "InstaNAS, fastest at ≥ its accuracy": "none" if cheapest is None else _point(cheapest),
                "dominated": "yes" if dominated else "no",
            })
    return pd.DataFrame(rows)


if __name__ == "__main__":
    frame = standing(pd.read_csv(sys.argv[1]))
    print("InstaNAS (re-trained snapshots) against each baseline point; latency LUT / measured, controller and "
          "policies included.\n")
    print("| " + " | ".join(frame.columns) + " |")
    print("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        print("| " + " | ".join(str(value) for value in row) + " |")

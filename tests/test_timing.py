"""The timing harness: real measurements, compared only as ratios taken in one run."""

import pytest
import torch

from instanas.metagraph import MetaGraph
from instanas.space import full_architecture, smallest_architecture
from profiler import PairedTimer, default_threads, measure_latency
from profiler.speed_gate import SAME_SPEED, SpeedGate


def test_measure_latency_reports_statistics_and_restores_threads():
    before = torch.get_num_threads()
    stats = measure_latency(torch.nn.Conv2d(3, 8, 3), torch.randn(1, 3, 16, 16), threads=1, min_run_time=0.05)
    assert stats.median_ms > 0 and stats.iqr_ms >= 0
    assert stats.runs >= 4 and stats.calls_per_run >= 1
    assert torch.get_num_threads() == before
    assert not torch.is_inference_mode_enabled()


def test_default_threads_is_physical_cores():
    assert 1 <= default_threads() <= (torch.get_num_threads() or 1) * 4


@pytest.mark.timing
def test_smallest_child_is_several_times_faster_than_full():
    """If unselected modules still ran, the two children would take about the same time."""
    torch.manual_seed(0)
    graph = MetaGraph(32).eval()
    x = torch.randn(1, 3, 32, 32)
    full, smallest = graph.child(full_architecture()), graph.child(smallest_architecture())
    ratios = []
    for _ in range(2):  # interleaved, so drift affects both alike
        slow = measure_latency(full, x, min_run_time=0.2).median_ms
        fast = measure_latency(smallest, x, min_run_time=0.2).median_ms
        ratios.append(slow / fast)
    assert max(ratios) > 4, ratios


@pytest.mark.timing
@pytest.mark.parametrize("grouped", [False, True], ids=["paired", "grouped"])
def test_ratio_tracks_relative_work(grouped):
    """A module against itself gives a ratio near 1; the same layers run twice give about 2 — timed in pairs, or in
    one group against one reference block per round."""
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU())
    twice = torch.nn.Sequential(layer, layer)
    x = torch.randn(1, 32, 32, 32)
    timer = PairedTimer(layer, x, threads=1)
    if grouped:
        same, double = timer.measure_group([(layer, x), (twice, x)], min_run_time=0.1)
        assert double.runs >= 5 and double.reference_ms == same.reference_ms
    else:
        same = timer.measure(layer, x, min_run_time=0.1)
        double = timer.measure(twice, x, min_run_time=0.1)
        assert double.runs >= 7
    assert 0.8 < same.ratio < 1.25
    assert 1.6 < double.ratio < 2.5
    assert double.reference_ms > 0 and double.median_ms > double.reference_ms


def test_speed_gate_admits_the_tables_speed_and_counts_what_it_sets_aside():
    gate = SpeedGate(anchor_ms=5.0, wait_s=1.0, poll_s=0.1)
    assert gate.admits(5.0 * (1 + 0.9 * SAME_SPEED), 0.5) and gate.admits(5.0 * (1 - 0.9 * SAME_SPEED), 0.5)
    assert not gate.admits(6.3, 0.5) and not gate.admits(4.0, 0.5)
    assert gate.set_aside == 2 and gate.waited_s == pytest.approx(1.0), "set-aside measurements count as waiting"
    assert gate.admits(6.3, 0.5), "once the wait is spent, every measurement is kept as taken"
    waits = []
    gate = SpeedGate(anchor_ms=5.0, wait_s=0.25, poll_s=0.1)
    gate.on_wait = lambda reference_ms, waited_s: waits.append(waited_s)
    gate.pause()
    assert waits == [] and gate.waited_s == 0, "one measurement off speed is jitter: no pause"
    for _ in range(4):
        gate.pause()
    assert waits == pytest.approx([0.0, 0.1, 0.2]) and gate.waited_s == pytest.approx(0.25), "pauses stop at wait_s"
    assert gate.admits(5.0, 0.0) and gate.off_in_a_row == 0, "an admitted measurement ends the run of pauses"

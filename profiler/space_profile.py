"""Profile every part an architecture executes, each in context (its real input shape at that cell and resolution).

The entries: the stem, each cell's five modules (their own identity shortcut included), the cost of merging k = 2…5
module outputs in each cell (their sum, or their mean: see :mod:`instanas.metagraph`), the head, and the controller
(which runs once per image, whatever it chooses). An architecture runs the stem, its selected modules, one k-way sum per
cell that selects k ≥ 2 modules, and the head, so its estimate is the sum of exactly those entries.

Each entry is timed in blocks alternating with blocks of the reference network (:mod:`profiler.reference`), so
what is recorded is mostly the ratio of the two, which the machine's changing speed does not move. Entries are
measured in rounds, each round in a fresh random order; the table keeps every round's value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from instanas.controller import Controller
from instanas.metagraph import MetaGraph, OutputMerge
from instanas.space import CONTROLLER_KEY, MAX_MERGED, MODULE_NAMES, controller_signature, merge_key, module_key
from profiler.reference import reference_timer
from profiler.speed_gate import SpeedGate
from profiler.timing import PairedStats


@dataclass(frozen=True)
class ProfileTask:
    """One entry of the table: what to run and on which input."""

    key: str
    kind: str  # "stem" | "module" | "merge" | "head" | "controller"
    cell: int | None
    module: str | None
    merged: int | None  # k, for merge entries
    build: Callable[[], tuple[nn.Module, object]]


@dataclass(frozen=True)
class ProfileMeasurement:
    task: ProfileTask
    round: int
    stats: PairedStats

    def as_record(self) -> dict:
        """A plain, JSON-ready record of this measurement."""
        task = self.task
        identity = {"key": task.key, "kind": task.kind, "cell": task.cell, "module": task.module}
        return identity | {"merged": task.merged, "round": self.round, **self.stats.as_dict()}


def profile_tasks(graph: MetaGraph) -> list[ProfileTask]:
    """Every entry of ``graph``'s table, with its module and an input of the shape it sees in the network."""
    space = graph.space

    def feature_map(channels: int, hw: int) -> Tensor:
        return torch.randn(1, channels, hw, hw)

    tasks = [
        ProfileTask("stem", "stem", None, None, None, lambda: (graph.stem, feature_map(3, space.resolution)))
    ]
    for spec, cell in zip(space.cells, graph.cells):
        for name, module in zip(MODULE_NAMES, cell.options):
            tasks.append(
                ProfileTask(
                    module_key(spec.index, name),
                    "module",
                    spec.index,
                    name,
                    None,
                    lambda module=module, spec=spec: (module, feature_map(spec.in_channels, spec.input_hw)),
                )
            )
        for merged in range(2, MAX_MERGED + 1):
            tasks.append(
                ProfileTask(
                    merge_key(spec.index, merged),
                    "merge",
                    spec.index,
                    None,
                    merged,
                    lambda spec=spec, merged=merged: (
                        OutputMerge(graph.merge),
                        tuple(feature_map(spec.out_channels, spec.output_hw) for _ in range(merged)),
                    ),
                )
            )
    last = space.cells[-1]
    tasks.append(ProfileTask("head", "head", None, None, None,
                             lambda: (graph.head, feature_map(last.out_channels, last.output_hw))))
    controller = Controller(space.resolution)
    image = feature_map(3, space.resolution)
    tasks.append(ProfileTask(CONTROLLER_KEY, "controller", None, controller_signature(space.resolution), None,
                             lambda: (controller, image)))
    return tasks


def profile_space(
    resolution: int,
    *,
    threads: int,
    min_run_time: float,
    rounds: int,
    num_classes: int | None = None,
    merge: str = "mean",
    seed: int = 0,
    skip: frozenset[tuple[str, int]] = frozenset(),
    gate: SpeedGate | None = None,
    backend: str = "eager",
) -> Iterator[ProfileMeasurement]:
    """Measure every entry ``rounds`` times, yielding each measurement as it finishes.

    ``skip`` holds ``(key, round)`` pairs already measured (a resumed run); the order of a round depends only on
    ``seed`` and the round, so a resumed run measures the same remaining entries it would have. With a ``gate``, an
    entry timed off its speed goes to the end of its round, after a pause. Entries and the reference run in
    ``backend``.
    """
    torch.manual_seed(seed)
    graph = MetaGraph(resolution, num_classes, merge).eval()
    tasks = profile_tasks(graph)
    timer = reference_timer(threads, backend)
    for round_index in range(rounds):
        order = np.random.default_rng([seed, round_index]).permutation(len(tasks))
        queue = deque(tasks[position] for position in order if (tasks[position].key, round_index) not in skip)
        while queue:
            task = queue.popleft()
            module, example_input = task.build()
            began = time.perf_counter()
            stats = timer.measure(module, example_input, min_run_time=min_run_time)
            if gate is None or gate.admits(stats.reference_ms, time.perf_counter() - began):
                yield ProfileMeasurement(task, round_index, stats)
            else:
                queue.append(task)
                gate.pause()

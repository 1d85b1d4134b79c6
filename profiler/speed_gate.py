"""Timing only while the machine runs at a given speed.

This shared machine switches between speed states (the reference network takes 4.6–5.3 ms per call in one, 5.9–6.8 ms
in the other), and a network's ratio to the reference moves with the state, by about 5 % at 224 px
(``docs/results/reference-state/``): pairing cancels the speed changes within a state, not the change between them,
so no single table describes both. A :class:`SpeedGate` holds a table's anchor (the reference's latency while it
was profiled); a measurement whose reference ran more than ``SAME_SPEED`` off it is set aside, to be taken again
after a pause. The reference alone is no probe of the state: beside a 224 px child it runs 8 % slower than on its
own, so the gate judges each measurement by the reference timed beside it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from instanas.atomic import atomic_write
from instanas.errors import InstaNASError

SAME_SPEED = 0.15  # the reference within 15 % of the anchor: the machine ran in the state the table was profiled in


def at_speed(reference_ms, anchor_ms: float):
    """Whether the reference's latency (a number or an array) says the machine ran in the anchor's speed state."""
    return np.abs(np.asarray(reference_ms) / anchor_ms - 1) < SAME_SPEED


class SpeedGate:
    """Admits measurements taken at ``anchor_ms``'s speed. After two set-aside measurements in a row (one is the
    state's own jitter, not another state) the caller's :meth:`pause` sleeps ``poll_s`` seconds. Set-aside
    measurements and pauses count against ``wait_s``; once it is spent, every measurement is admitted as taken."""

    def __init__(self, anchor_ms: float, wait_s: float, poll_s: float = 15.0):
        self.anchor_ms, self.wait_s, self.poll_s = anchor_ms, wait_s, poll_s
        self.waited_s = 0.0
        self.set_aside = 0  # measurements set aside because the machine ran off speed
        self.off_speed_ms = float("nan")  # the reference's latency in the last of them
        self.off_in_a_row = 0  # pauses asked for since the last admitted measurement
        self.on_wait = None  # called as on_wait(reference_ms, waited_s) before each pause

    def admits(self, reference_ms: float, wall_s: float) -> bool:
        """Whether to keep a measurement whose reference took ``reference_ms``; one set aside counts as waiting."""
        admitted = bool(at_speed(reference_ms, self.anchor_ms)) or self.waited_s >= self.wait_s
        if admitted:
            self.off_in_a_row = 0
        else:
            self.set_aside += 1
            self.waited_s += wall_s
            self.off_speed_ms = reference_ms
        return admitted

    def pause(self) -> None:
        """After a set-aside measurement: from the second in a row on, give the machine ``poll_s`` seconds (less what
        is left of the wait) to return to the anchor's speed."""
        self.off_in_a_row += 1
        pause = min(self.poll_s, self.wait_s - self.waited_s)
        if pause > 0 and self.off_in_a_row >= 2:
            if self.on_wait:
                self.on_wait(self.off_speed_ms, self.waited_s)
            time.sleep(pause)
            self.waited_s += pause

    def save(self, path: Path) -> None:
        """Keep what the gate has set aside and waited, for a resumed run (:meth:`resume`)."""
        atomic_write(path, json.dumps({"waited_s": self.waited_s, "set_aside": self.set_aside}) + "\n")

    def resume(self, path: Path) -> None:
        """Continue from what a run's earlier sessions set aside and waited (none if it kept no file)."""
        if not path.exists():
            return
        try:
            saved = json.loads(path.read_text())
            self.waited_s, self.set_aside = float(saved["waited_s"]), int(saved["set_aside"])
        except (ValueError, KeyError, TypeError):
            raise InstaNASError(f"{path}: not a speed-gate record; delete it to resume with a fresh wait") from None

    def report(self) -> dict:
        return {"anchor_ms": self.anchor_ms, "tolerance": SAME_SPEED, "wait_s": self.wait_s,
                "waited_s": round(self.waited_s, 1), "set_aside": self.set_aside}

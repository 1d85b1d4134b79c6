"""The network every paired measurement is timed against, at every resolution.

It is the MobileNetV2-like child (``mb3e6`` in every cell) at 32 px with seeded weights: 5–6 ms on the 2-core
development machine (18 ms on the previous one), so a pair costs little beside a 224 px entry (the 224 px child took
44 ms there and made a paired 224 px profile last an hour), and every table of a machine is anchored to the same
network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from instanas.space import format_architecture, mobilenetv2_architecture

if TYPE_CHECKING:
    from profiler.timing import PairedTimer

REFERENCE_RESOLUTION = 32
REFERENCE_SEED = 0


def reference_description() -> dict:
    """What a table records about its reference, so tables and runs against another reference can be refused."""
    return {"arch": format_architecture(mobilenetv2_architecture()), "resolution": REFERENCE_RESOLUTION}


def reference_timer(threads: int | None = None, backend: str = "eager") -> PairedTimer:
    """A :class:`PairedTimer` against the reference network, run in ``backend`` like what it times (own random
    stream: the caller's is left alone)."""
    # torch only here: a table checks its reference description without loading torch (about 2 s)
    import torch

    from instanas.metagraph import MetaGraph
    from profiler.timing import PairedTimer

    with torch.random.fork_rng():
        torch.manual_seed(REFERENCE_SEED)
        graph = MetaGraph(REFERENCE_RESOLUTION).eval()
        network = graph.child(mobilenetv2_architecture())
        image = torch.randn(1, 3, REFERENCE_RESOLUTION, REFERENCE_RESOLUTION)
    return PairedTimer(network, image, threads=threads, backend=backend)

"""How ``correlate`` and ``calibrate`` time children: the settings, apart from the timing code so that the CLI can
show their defaults without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Timing noise lasts about a second here (errors of children timed one after the other correlate 0.35, 16 apart 0.03:
# docs/results/xeon/), so passes that far apart are independent measurements.
PASS_SPACING = 64

# An exported child owns a copy of its weights, where eager children share the meta-graph's: four dense 32 px children
# timed in turn hold four copies (~30 MB each) and measured 12–14 % slower in ONNX Runtime and OpenVINO;
# eager children were unaffected (docs/results/validation-noise/grouping/). The runtimes time one child per reference
# block, warmed and timed as the table's entries are.
RUNTIME_DEFAULTS = {"group": 1, "warmup_calls": 3, "min_runs": 7, "min_run_time": 0.1}


@dataclass(frozen=True)
class Harness:
    """How children are timed. ``group`` children share each reference block (1: a reference block beside every
    child block, as the LUT's entries are profiled); each child gets ``warmup_calls`` warm-up calls and at least
    ``min_runs`` timed blocks and ``min_run_time`` seconds, in each of ``passes`` measurements. The defaults (eager's)
    cost 0.10 s per child at 32 px against 0.17 s for the profile's pairing (``--group 1 --warmup-calls 3 --min-runs 7
    --min-time 0.1``) at the agreement that pairing gives twice (``docs/results/correlate-harness/``); the runtimes
    time with the profile's pairing (:meth:`for_backend`, ``RUNTIME_DEFAULTS``)."""

    min_run_time: float = 0.05
    group: int = 4
    warmup_calls: int = 1
    min_runs: int = 5
    remeasure_iqr: float = 0.2  # a child whose ratio IQR exceeds this share of its ratio is measured again
    passes: int = 1  # measurements of each child, PASS_SPACING children apart in time; their ratios' geometric mean
    repeat: float = 0.1  # share of the children timed again half a run later: the machine's noise, for the report
    processes: int = 1  # fresh processes the run is cut into, in turn (lut.agreement.process_parts)

    @property
    def chunk(self) -> int:
        """Children timed together: one group, or with several passes PASS_SPACING children, each pass in its own
        grouping (the second pass puts each child beside other children, seconds after the first)."""
        return self.group if self.passes == 1 else max(PASS_SPACING, self.group)

    def settings(self) -> dict:
        return asdict(self)

    @classmethod
    def for_backend(cls, backend: str, **given) -> Harness:
        """The harness ``backend`` times children with by default, with the ``given`` settings that are not None."""
        defaults = {} if backend == "eager" else RUNTIME_DEFAULTS
        return cls(**(defaults | {name: value for name, value in given.items() if value is not None}))

    @staticmethod
    def default_text(name: str) -> str:
        """A setting's defaults as help text: eager's, and the runtimes' where they differ."""
        eager = getattr(Harness(), name)
        runtime = RUNTIME_DEFAULTS.get(name, eager)
        return f"{eager:g}" if runtime == eager else f"{eager:g} eager, {runtime:g} onnxruntime/openvino"

"""Option types and helpers every command group shares."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from instanas.errors import InstaNASError
from profiler.harness import Harness

console = Console()

Resolution = Annotated[int, typer.Option("--resolution", "-r", help="Input resolution: 32, 64 or 224.")]
Threads = Annotated[
    int | None, typer.Option("--threads", "-t", min=1, help="Intra-op threads (default: physical cores).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
Store = Annotated[
    Path | None,
    typer.Option("--out", help="LUT store folder (default: $INSTANAS_LUT_DIR or ./lut/tables).", file_okay=False),
]
LutPath = Annotated[
    Path | None, typer.Option("--lut", help="A LUT file (default: this machine's newest at the resolution).")
]
AllowForeign = Annotated[
    bool, typer.Option("--allow-foreign-lut", help="Use a LUT profiled on another machine (with a warning).")
]
Mode = Annotated[
    str | None,
    typer.Option("--mode", help="plain (the paper's sum) or calibrated (default: calibrated when the LUT has it)."),
]
WaitForSpeed = Annotated[
    float,
    typer.Option(
        "--wait-for-speed",
        min=0,
        help="Minutes to wait in all for the machine to run at the table's speed (the reference within 15 % of its "
        "anchor) while measurements taken off it are set aside and taken again; 0: keep every measurement as taken.",
    ),
]
Backend = Annotated[
    str,
    typer.Option("--backend", help="Where networks run when timed, and whose LUT is used: eager (PyTorch), onnxruntime "
                 "(the onnx extra) or openvino (the openvino extra); each backend has its own tables."),
]
TensorBoard = Annotated[
    bool, typer.Option("--tensorboard/--no-tensorboard", help="Also write every epoch's metrics as TensorBoard scalars in <run>/tb/<stage>/.")
]
CellMerge = Annotated[
    str,
    typer.Option("--cell-merge", help="How a cell merges its modules' outputs: mean (default) or sum (the paper's)."),
]


@contextlib.contextmanager
def interruptible(kept: str, before=None):
    """Ctrl-C ends the command with exit code 130 and one line saying what was kept (``before`` runs first)."""
    try:
        yield
    except KeyboardInterrupt:
        if before:
            before()
        typer.echo(f"interrupted: {kept}", err=True)
        raise typer.Exit(130) from None


def emit_json(payload: dict) -> None:
    typer.echo(json.dumps(payload, indent=2))

def run_folder(out: Path | None, prefix: str, resume: bool) -> Path:
    """``--out`` if given; else a new ``runs/<prefix>-<timestamp>``, or with --resume the newest existing one."""
    if out is not None:
        return out
    if resume:
        existing = sorted(Path("runs").glob(f"{prefix}-*"))
        if not existing:
            raise InstaNASError(f"nothing to resume: no runs/{prefix}-* folder here (pass --out)")
        return existing[-1]
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def show_waiting(progress, bar, whose: str, anchor_ms: float, wait_minutes: float):
    """A speed gate's ``on_wait``: the progress bar says the run waits for the machine, and how long it has."""

    def on_wait(reference_ms: float, waited_s: float) -> None:
        progress.update(bar, status=f"machine off {whose} speed (reference {reference_ms:.2f} ms vs {anchor_ms:.2f}): "
                                    f"waiting, {waited_s / 60:.1f} of {wait_minutes:g} min")

    return on_wait



DEFAULT_HARNESS = Harness()


def _harness_option(flag: str, kind: type, minimum: float, text: str, setting: str):
    """An option of how children are timed whose default depends on the backend (None: that default)."""
    return Annotated[kind | None, typer.Option(flag, min=minimum, show_default=False,
                                               help=f"{text} (default: {Harness.default_text(setting)})")]


ChildMinTime = _harness_option("--min-time", float, 0.01, "Seconds of timing per child.", "min_run_time")
Group = _harness_option("--group", int, 1, "Children timed per reference block (1: a reference block per child).",
                        "group")
WarmupCalls = _harness_option("--warmup-calls", int, 1, "Untimed calls of each child first.", "warmup_calls")
MinRuns = _harness_option("--min-runs", int, 3, "Timed blocks per child, at least.", "min_runs")
Passes = Annotated[
    int,
    typer.Option("--passes", min=1, help="Measurements of each child, seconds apart in other groups (their geometric "
                 "mean counts): the machine's timing noise lasts about a second, so each pass is a new draw of it."),
]
Repeat = Annotated[
    float,
    typer.Option("--repeat", min=0, max=1, help="Share of the children timed a second time, half a run later: the "
                 "machine's own noise, which the report sets beside the LUT's error and takes out of it."),
]

Processes = Annotated[
    int,
    typer.Option("--processes", min=1, help="Fresh processes the run is cut into, one after the other: a process's own "
                 "offset falls on its share of the children, and a repeat is timed in another process than its first."),
]


def _epochs(name: str, what: str | None = None):
    return Annotated[int, typer.Option(f"--{name}-epochs", min=1, help=f"Epochs of {what or 'stage ' + name}.")]


PretrainEpochs = _epochs("pretrain")
SearchEpochs = _epochs("search")
FinetuneEpochs = _epochs("finetune")


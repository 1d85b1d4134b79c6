"""The ``instanas`` command: parse, call the library, print. No logic of its own.

User errors (bad values, files, folders) end as one line on stderr with exit code 2; see :func:`main`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from instanas.atomic import report_path
from instanas.baselines.settings import (
    METHODS,
    WIDTHS,
    BlockDropSettings,
    CompareOptions,
    ConvNetAIGSettings,
    parse_widths,
)
from instanas.errors import InstaNASError
from instanas.progress import progress_bar
from instanas.space import (
    MODULE_NAMES,
    RESOLUTIONS,
    correlation_sample,
    edge_architectures,
    format_architecture,
    full_architecture,
    parse_architecture,
    profiled_keys,
    sample_architectures,
    search_space,
    smallest_architecture,
)
from instanas.training.config import STAGES, TrainConfig
from profiler.harness import Harness

app = typer.Typer(
    help="InstaNAS latency profiling and benchmarking: search space, lookup tables, correlation, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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
                 "(extra [onnx]) or openvino (extra [openvino]); each backend has its own tables."),
]
TensorBoard = Annotated[
    bool, typer.Option("--tensorboard/--no-tensorboard", help="Also write every epoch's metrics as TensorBoard scalars in <run>/tb/<stage>/.")
]
CellMerge = Annotated[
    str,
    typer.Option("--cell-merge", help="How a cell merges its modules' outputs: mean (default) or sum (the paper's)."),
]


@app.callback()
def configure(
    malloc: Annotated[
        str,
        typer.Option(
            "--malloc",
            envvar="INSTANAS_MALLOC",
            help="pinned (default): glibc's mmap and trim thresholds fixed, so timings do not depend on what ran "
            "before; system: glibc's moving thresholds. Recorded in the machine fingerprint.",
        ),
    ] = "pinned",
) -> None:
    """Settings of the process that every command's timings depend on."""
    from profiler.allocator import ALLOCATOR_MODES, set_allocator

    if malloc not in ALLOCATOR_MODES:
        raise InstaNASError(f"--malloc {malloc!r}: use one of {', '.join(ALLOCATOR_MODES)}")
    set_allocator(malloc)


lut_app = typer.Typer(help="Inspect stored latency lookup tables.", no_args_is_help=True)
app.add_typer(lut_app, name="lut")


@contextlib.contextmanager
def _interruptible(kept: str, before=None):
    """Ctrl-C ends the command with exit code 130 and one line saying what was kept (``before`` runs first)."""
    try:
        yield
    except KeyboardInterrupt:
        if before:
            before()
        typer.echo(f"interrupted: {kept}", err=True)
        raise typer.Exit(130) from None


def _emit_json(payload: dict) -> None:
    typer.echo(json.dumps(payload, indent=2))


@app.command()
def space(resolution: Resolution, as_json: AsJson = False) -> None:
    """Show the cell table at a resolution and the exact number of architectures."""
    table_space = search_space(resolution)
    cells = [
        {
            "index": cell.index,
            "input_hw": cell.input_hw,
            "in_channels": cell.in_channels,
            "out_channels": cell.out_channels,
            "stride": cell.stride,
            "required": cell.required,
        }
        for cell in table_space.cells
    ]
    count = table_space.num_architectures
    if as_json:
        _emit_json({"resolution": resolution, "architectures": count, "cells": cells})
        return
    table = Table(title=f"InstaNAS search space at {resolution} px")
    for column in ("cell", "input", "channels", "stride", "must select"):
        table.add_column(column, justify="right")
    for cell in cells:
        hw = cell["input_hw"]
        table.add_row(
            str(cell["index"]),
            f"{hw}×{hw}",
            f"{cell['in_channels']} → {cell['out_channels']}",
            str(cell["stride"]),
            "yes" if cell["required"] else "",
        )
    console.print(f"module options in every cell: {', '.join(MODULE_NAMES)}")
    console.print(f"stem: 3×3 conv to 32 channels, stride {table_space.stem_stride}")
    console.print(table)
    final = table_space.final_hw
    console.print(f"head: 1×1 conv to 1280, {final}×{final} global average pool, linear classifier")
    console.print(f"architectures: {count:,} (≈ {count:.2e})")


@app.command()
def sample(
    resolution: Resolution,
    n: Annotated[int | None, typer.Option("-n", min=0, help="How many architectures [default: 10].")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: fresh entropy).")] = None,
    keep: Annotated[
        float | None, typer.Option("--keep", help="Probability of keeping each module, in (0, 1] [default: 0.5].")
    ] = None,
    edges: Annotated[
        bool, typer.Option("--edges", help="Instead: the edges of the space (smallest, full, one type, sparse, dense).")
    ] = False,
) -> None:
    """Print N valid random architectures, one string per line (`correlate --archs` reads this format)."""
    search_space(resolution)  # rejects an unsupported resolution
    if edges:
        if n is not None or keep is not None:
            raise InstaNASError("--edges prints a fixed set of architectures: leave out -n and --keep")
        for label, arch in edge_architectures(seed or 0):
            typer.echo(f"{format_architecture(arch)}  # {label}")
        return
    for arch in sample_architectures(10 if n is None else n, keep=0.5 if keep is None else keep, seed=seed):
        typer.echo(format_architecture(arch))


@app.command()
def measure(
    resolution: Resolution,
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture string, 17 tokens like 10001.")],
    threads: Threads = None,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timed runs.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and input.")] = 0,
    cell_merge: CellMerge = "mean",
    paired: Annotated[
        bool,
        typer.Option("--paired", help="Also as the LUT was measured: ratio to the reference × the LUT's anchor."),
    ] = False,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    backend: Backend = "eager",
    as_json: AsJson = False,
) -> None:
    """Build one child network and measure its real batch-1 CPU latency (raw median; --paired: like the LUT)."""
    import torch

    from instanas.metagraph import MetaGraph
    from instanas.space import check_merge
    from profiler import default_threads, measure_latency
    from profiler.backends import check_backend

    selection = parse_architecture(arch)
    search_space(resolution)
    check_merge(cell_merge)
    check_backend(backend)
    table = _paired_table(resolution, lut, threads, cell_merge, allow_foreign_lut, backend) if paired else None
    threads = table.threads if table else threads or default_threads()
    torch.manual_seed(seed)
    child = MetaGraph(resolution, merge=cell_merge).child(selection).eval()
    image = torch.randn(1, 3, resolution, resolution)
    result = {"arch": format_architecture(selection), "resolution": resolution, "threads": threads, "backend": backend}
    if table is None:
        stats = measure_latency(child, image, threads=threads, min_run_time=min_time, backend=backend)
        result |= stats.as_dict()
    else:
        from profiler.reference import reference_timer

        stats = reference_timer(threads, backend).measure(child, image, min_run_time=min_time)
        result |= stats.as_dict() | {
            "paired_ms": float(table.measured_ms(stats.ratio, stats.reference_ms)),
            "paired_iqr_ms": float(table.measured_ms(stats.ratio_iqr, stats.reference_ms)),
            "anchor_ms": table.anchor_ms,
            "speed_exponent": table.speed_exponent,
            "lut": report_path(table.path),
            f"estimate_{table.default_mode}_ms": table.estimate(selection, mode=table.default_mode),
        }
    if as_json:
        _emit_json(result)
        return
    typer.echo(
        f"{result['arch']} @ {resolution} px, {threads} threads, {backend}: median {stats.median_ms:.3f} ms, "
        f"IQR {stats.iqr_ms:.3f} ms over {stats.runs} runs × {stats.calls_per_run} calls"
    )
    if table is not None:
        typer.echo(
            f"paired: {result['paired_ms']:.3f} ms (IQR {result['paired_iqr_ms']:.3f} ms) = ratio {stats.ratio:.4f} to "
            f"the reference × the LUT's anchor {table.anchor_ms:.3f} ms × (reference now {stats.reference_ms:.3f} ms / "
            f"anchor) ^ {table.speed_exponent:.3f}; "
            f"LUT {table.default_mode} estimate {result[f'estimate_{table.default_mode}_ms']:.3f} ms"
        )


@app.command()
def export(
    resolution: Resolution,
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture string, 17 tokens like 10001.")],
    out: Annotated[Path, typer.Argument(help="The ONNX file to write.", dir_okay=False)],
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and the check's input.")] = 0,
    cell_merge: CellMerge = "mean",
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0, help="Largest difference allowed, relative to the largest output.")
    ] = 1e-4,
) -> None:
    """Export one child network (seeded random weights, batch-norm statistics of random images) as an ONNX file, its
    output checked in ONNX Runtime against PyTorch's on another random input; nothing is written when they differ."""
    import torch

    from instanas.atomic import atomic_write
    from instanas.space import check_merge
    from profiler.backends import ONNX_OPSET, check_backend, export_difference, network_onnx, seeded_child

    selection = parse_architecture(arch)
    search_space(resolution)
    check_merge(cell_merge)
    check_backend("onnxruntime")
    child = seeded_child(selection, resolution, merge=cell_merge, seed=seed)
    graph = network_onnx(child, torch.randn(1, 3, resolution, resolution))
    check_input = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed + 1))
    difference, scale = export_difference(child, graph, check_input)
    if difference > tolerance * max(1.0, scale):
        raise InstaNASError(f"{out}: ONNX Runtime's output differs from PyTorch's by {difference:.2e} (largest output "
                            f"{scale:.2e}, tolerance {tolerance:g}); nothing written")
    atomic_write(out, graph)
    typer.echo(f"{out}: {format_architecture(selection)} @ {resolution} px, {len(graph) / 1e6:.1f} MB, opset "
               f"{ONNX_OPSET}; ONNX Runtime against PyTorch on a random input: max abs difference {difference:.2e} "
               f"(largest output {scale:.2e})")


def _paired_table(
    resolution: int, lut: Path | None, threads: int | None, merge: str | None, allow_foreign: bool, backend: str
):
    """The LUT whose anchor converts paired measurements to milliseconds: same reference, cell merge, threads and
    backend."""
    from lut.store import default_store, resolve_table

    table = resolve_table(
        resolution, path=lut, store=default_store(), threads=threads, allow_foreign=allow_foreign, merge=merge,
        backend=backend,
    )
    table.check_reference()
    if threads is not None and threads != table.threads:
        raise InstaNASError(f"{table.path} was profiled with {table.threads} threads, not {threads}")
    return table


def _parse_resolutions(values: list[str]) -> list[int]:
    resolutions: list[int] = []
    for value in values:
        if value == "all":
            resolutions += RESOLUTIONS
        else:
            try:
                resolutions.append(search_space(int(value)).resolution)
            except ValueError:
                search_space(value)  # raises the one-line "not supported" error
    return list(dict.fromkeys(resolutions))


@app.command()
def profile(
    resolution: Annotated[
        list[str], typer.Option("--resolution", "-r", help="32, 64, 224 or all; may be repeated.")
    ],
    threads: Threads = None,
    out: Store = None,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timing per entry per round.")] = 0.25,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Rounds over all entries, each in a new order.")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights, inputs and measuring order.")] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted profile.")] = False,
    cell_merge: CellMerge = "mean",
    speed_of: Annotated[
        Path | None,
        typer.Option("--speed-of", help="Time entries only while the machine runs at this earlier table's speed "
                     "(its reference anchor, within 15 %), so that two profiles compare like with like.",
                     dir_okay=False),
    ] = None,
    wait_for_speed: WaitForSpeed = 30.0,
    backend: Backend = "eager",
) -> None:
    """Profile every module of every cell (plus stem, head and per-cell merges) into a new LUT version."""
    from instanas.space import check_merge

    resolutions = _parse_resolutions(resolution)
    check_merge(cell_merge)
    from lut.profile import ProfileRun
    from lut.store import default_store, load_table
    from profiler import default_threads
    from profiler.backends import check_backend
    from profiler.speed_gate import SpeedGate

    check_backend(backend)
    speed_table = load_table(speed_of) if speed_of else None
    if speed_table and resolutions != [speed_table.resolution]:
        raise InstaNASError(f"{speed_of}: a {speed_table.resolution} px table sets the speed of "
                            f"{speed_table.resolution} px profiles only")
    if speed_table and speed_table.backend != backend:
        raise InstaNASError(f"{speed_of}: timed in the {speed_table.backend} backend, not {backend}: its reference "
                            f"speed is another runtime's")
    if speed_table:
        speed_table.check_reference()
    store = out or default_store()
    threads = threads or default_threads()
    for res in resolutions:
        gate = SpeedGate(speed_table.anchor_ms, 60 * wait_for_speed) if speed_table and wait_for_speed > 0 else None
        run = ProfileRun(res, store=store, threads=threads, min_run_time=min_time, rounds=rounds, seed=seed,
                         merge=cell_merge, resume=resume, gate=gate, speed_of=speed_of, backend=backend)
        started = time.perf_counter()
        try:
            with _interruptible(f"finished measurements kept in {run.journal.path}; rerun with --resume",
                                before=run.close), progress_bar() as progress:
                label = f"profile {res} px" + (f" ({backend})" if backend != "eager" else "")
                bar = progress.add_task(label, total=run.total, completed=run.done, status="")
                if gate:
                    gate.on_wait = _show_waiting(progress, bar, f"{speed_of.name}'s", gate.anchor_ms, wait_for_speed)
                for measurement in run.measure():
                    status = f"round {measurement.round + 1}/{rounds} {measurement.task.key}"
                    progress.update(bar, advance=1, status=status)
            table = run.save()
        finally:
            run.close()  # the journal's lock, whatever happened (after save: nothing left to close)
        typer.echo(
            f"{table.path}: {len(table.entries)} entries at {res} px in {time.perf_counter() - started:.0f} s; "
            f"estimate full {table.estimate(full_architecture()):.2f} ms, "
            f"smallest {table.estimate(smallest_architecture()):.2f} ms"
        )
        if gate:
            typer.echo(f"speed gate ({speed_of.name}, anchor {gate.anchor_ms:.2f} ms): {gate.set_aside} measurements "
                       f"set aside, {gate.waited_s / 60:.1f} min waited; this table's anchor {table.anchor_ms:.2f} ms")


@app.command()
def estimate(
    resolution: Resolution,
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture string, 17 tokens like 10001.")],
    lut: LutPath = None,
    out: Store = None,
    threads: Threads = None,
    mode: Mode = None,
    allow_foreign_lut: AllowForeign = False,
    backend: Backend = "eager",
    as_json: AsJson = False,
) -> None:
    """Estimate an architecture's latency from the LUT."""
    from lut.store import default_store, resolve_table
    from profiler.backends import check_backend

    selection = parse_architecture(arch)
    search_space(resolution)
    check_backend(backend)
    table = resolve_table(
        resolution, path=lut, store=out or default_store(), threads=threads, allow_foreign=allow_foreign_lut,
        backend=backend,
    )
    mode = mode or table.default_mode
    result = {
        "arch": format_architecture(selection),
        "resolution": resolution,
        "mode": mode,
        "estimate_ms": table.estimate(selection, mode=mode),
        "backend": table.backend,
        "lut": str(table.path),  # printed, not written: the path as given
        "lut_version": table.version,
    }
    if as_json:
        _emit_json(result)
    else:
        typer.echo(f"{result['arch']} @ {resolution} px: {result['estimate_ms']:.3f} ms ({mode}, LUT {table.path})")


def _run_folder(out: Path | None, prefix: str, resume: bool) -> Path:
    """``--out`` if given; else a new ``runs/<prefix>-<timestamp>``, or with --resume the newest existing one."""
    if out is not None:
        return out
    if resume:
        existing = sorted(Path("runs").glob(f"{prefix}-*"))
        if not existing:
            raise InstaNASError(f"nothing to resume: no runs/{prefix}-* folder here (pass --out)")
        return existing[-1]
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _show_waiting(progress, bar, whose: str, anchor_ms: float, wait_minutes: float):
    """A speed gate's ``on_wait``: the progress bar says the run waits for the machine, and how long it has."""

    def on_wait(reference_ms: float, waited_s: float) -> None:
        progress.update(bar, status=f"machine off {whose} speed (reference {reference_ms:.2f} ms vs {anchor_ms:.2f}): "
                                    f"waiting, {waited_s / 60:.1f} of {wait_minutes:g} min")

    return on_wait


def _measure_children(table, out_dir: Path, label: str, children, harness, *, mode: str, resume: bool,
                      wait_for_speed: float) -> dict:
    """Run a correlation with a progress bar showing the running Pearson r; Ctrl-C keeps finished rows."""
    from lut.validation import CorrelationRun

    run = CorrelationRun(table, out_dir, children, harness, mode=mode, resume=resume,  # checks settings first
                         wait_for_speed_s=60 * wait_for_speed)
    with progress_bar() as progress:
        bar = progress.add_task(label, total=run.n, completed=len(run.measured), status="")

        def on_row(done: int, total: int, pearson: float) -> None:
            progress.update(bar, completed=done, status=f"r = {pearson:.4f}")

        def report_so_far() -> None:
            progress.stop()
            if len(run.measured) >= 3:
                report = run.finish()
                typer.echo(f"interrupted: report of the {report['n']} finished children in {out_dir}", err=True)

        with _interruptible(f"finished rows kept in {out_dir / 'results.csv'}; rerun with --resume --out {out_dir}",
                            before=report_so_far):
            run.measure(on_row, _show_waiting(progress, bar, "the table's", table.children_reference_ms,
                                              wait_for_speed))
    return run.finish()


def _print_agreement(report: dict) -> None:
    from profiler.speed_gate import SAME_SPEED

    table = Table(title=f"LUT vs measured at {report['resolution']} px ({report['mode']} estimate)", title_justify="left")
    for column in ("mode", "n", "Pearson", "Spearman", "Kendall", "RMSE ms", "MAPE %", "±5 %", "±10 %", "fit"):
        table.add_column(column, justify="right")
    for mode, numbers in report["by_mode"].items():
        table.add_row(
            mode,
            str(numbers["n"]),
            f"{numbers['pearson']:.4f}",
            f"{numbers['spearman']:.4f}",
            f"{numbers['kendall']:.4f}",
            f"{numbers['rmse_ms']:.3f}",
            f"{numbers['mape_pct']:.2f}",
            f"{100 * numbers['within_5pct']:.1f} %",
            f"{100 * numbers['within_10pct']:.1f} %",
            f"{numbers['slope']:.3f}x {numbers['intercept']:+.2f}",
        )
    console.print(table)
    if "children" in report:
        chosen = Table(title="each architecture", title_justify="left")
        for column in ("label", "estimate ms", "measured ms", "error"):
            chosen.add_column(column, justify="left" if column == "label" else "right")
        for child in report["children"]:
            chosen.add_row(child["label"], f"{child['estimate_ms']:.3f}", f"{child['measured_ms']:.3f}",
                           f"{child['error_pct']:+.1f} %")
        console.print(chosen)
    console.print(f"wall time per child: {report['wall_s_per_child']:.3f} s")
    same = report["at_table_speed"]
    console.print(
        f"timed at the table's speed (reference within {100 * SAME_SPEED:.0f} % of its "
        f"{report['reference_ms']['at_table_speed']:.2f} ms): "
        f"{same['n']} children ({100 * same['share']:.0f} %)"
        + (f", {100 * same['within_5pct']:.1f} % within ±5 %, {100 * same['within_10pct']:.1f} % within ±10 %"
           if "within_5pct" in same else "")
    )
    if gate := report.get("speed_gate"):
        console.print(f"speed gate: {gate['set_aside']} measurements set aside while the machine ran off that speed, "
                      f"{gate['waited_s'] / 60:.1f} of {gate['wait_s'] / 60:g} min spent waiting")


_HARNESS = Harness()
ChildMinTime = Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timing per child.")]
Group = Annotated[
    int, typer.Option("--group", min=1, help="Children timed per reference block (1: a reference block per child).")
]
WarmupCalls = Annotated[int, typer.Option("--warmup-calls", min=1, help="Untimed calls of each child first.")]
MinRuns = Annotated[int, typer.Option("--min-runs", min=3, help="Timed blocks per child, at least.")]
Passes = Annotated[
    int,
    typer.Option("--passes", min=1, help="Measurements of each child, seconds apart in other groups (their geometric "
                 "mean counts): the machine's timing noise lasts about a second, so each pass is a new draw of it."),
]


@app.command()
def correlate(
    resolution: Resolution,
    n: Annotated[
        int | None, typer.Option("-n", min=3, help="How many sampled architectures to measure [default: 10000].")
    ] = None,
    archs: Annotated[
        Path | None,
        typer.Option("--archs", help="Measure these architectures instead: one string per line, '# label' after it."),
    ] = None,
    lut: LutPath = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampled architectures.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default runs/correlate-R-<time>).")] = None,
    threads: Threads = None,
    min_time: ChildMinTime = _HARNESS.min_run_time,
    group: Group = _HARNESS.group,
    warmup_calls: WarmupCalls = _HARNESS.warmup_calls,
    min_runs: MinRuns = _HARNESS.min_runs,
    passes: Passes = _HARNESS.passes,
    mode: Mode = None,
    wait_for_speed: WaitForSpeed = 30.0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (--out, or the newest).")] = False,
    allow_foreign_lut: AllowForeign = False,
    backend: Backend = "eager",
) -> None:
    """Validate the LUT: estimate vs measured latency of N sampled children (or of --archs); writes results.csv,
    report.json, scatter.png."""
    from lut.validation import Children
    from profiler.backends import check_backend

    search_space(resolution)
    check_backend(backend)
    if archs is not None and n is not None:
        raise InstaNASError("give -n (sampled children) or --archs (chosen ones), not both")
    children = Children.from_file(archs) if archs is not None else Children.sampled(n or 10_000, seed)
    table = _paired_table(resolution, lut, threads, None, allow_foreign_lut, backend)
    out_dir = _run_folder(out, f"correlate-{resolution}", resume)
    harness = Harness(min_run_time=min_time, group=group, warmup_calls=warmup_calls, min_runs=min_runs, passes=passes)
    report = _measure_children(table, out_dir, f"correlate {resolution} px", children, harness,
                               mode=mode or table.default_mode, resume=resume, wait_for_speed=wait_for_speed)
    _print_agreement(report)
    typer.echo(f"results: {out_dir / 'results.csv'}\nreport: {out_dir / 'report.json'}\nplot: {out_dir / 'scatter.png'}")


@app.command()
def calibrate(
    resolution: Resolution,
    n: Annotated[int, typer.Option("-n", min=10, help="How many children to measure for the fit.")] = 1000,
    lut: LutPath = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration children.")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Measurement folder (default runs/calibrate-R-<time>).")] = None,
    store: Annotated[
        Path | None, typer.Option("--store", help="LUT store to add the calibrated version to (default as profile).")
    ] = None,
    threads: Threads = None,
    min_time: ChildMinTime = _HARNESS.min_run_time,
    group: Group = _HARNESS.group,
    warmup_calls: WarmupCalls = _HARNESS.warmup_calls,
    min_runs: MinRuns = _HARNESS.min_runs,
    passes: Passes = _HARNESS.passes,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="entries (cells, then a small correction of each entry and cell; wants about 1,000 children), "
            "cells (a scale per feature-map size; costs per merge, module, cell executed, network), stages "
            "(the same without the per-cell cost) or linear (one scale; the first fit).",
        ),
    ] = "entries",
    speed_correction: Annotated[
        bool,
        typer.Option(
            "--speed-correction/--no-speed-correction",
            help="Also fit how much of the reference's changes of speed the children share (the speed exponent), and "
            "bring every measurement to the table's speed with it (the default); off: the plain pairing, ratio × anchor.",
        ),
    ] = True,
    wait_for_speed: WaitForSpeed = 30.0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run (--out, or the newest).")] = False,
    backend: Backend = "eager",
) -> None:
    """Fit the per-module and per-network costs isolated profiling misses; store them as a new LUT version.

    The calibration children come from another random stream than `correlate`'s, so they stay apart from the
    validation set.
    """
    from lut.store import default_store, resolve_table, save_calibrated
    from lut.table import check_calibration_model
    from lut.validation import CALIBRATION_STREAM, Children, calibration_from_results
    from profiler.backends import check_backend

    search_space(resolution)
    check_calibration_model(model)  # before any child is measured
    check_backend(backend)
    store = store or default_store()
    table = resolve_table(resolution, path=lut, store=store, threads=threads, allow_foreign=False, backend=backend)
    out_dir = _run_folder(out, f"calibrate-{resolution}", resume)
    harness = Harness(min_run_time=min_time, group=group, warmup_calls=warmup_calls, min_runs=min_runs, passes=passes)
    report = _measure_children(table, out_dir, f"calibrate {resolution} px", Children.sampled(n, seed + CALIBRATION_STREAM),
                               harness, mode="plain", resume=resume, wait_for_speed=wait_for_speed)
    calibration = calibration_from_results(table, out_dir / "results.csv", model, speed_correction) | {
        "measurements": report_path(out_dir), "harness": harness.settings()}
    calibrated = save_calibrated(table, calibration, store)
    terms = calibration.get("terms", ["scale", "ms per module", "ms per network"])
    values = calibration.get("coefficients") or [calibration[key] for key in ("scale", "per_module_ms", "per_network_ms")]
    typer.echo(f"{calibrated.path}: {model} calibration fitted on {calibration['children']} children "
               f"(plain sum there: Pearson {report['pearson']:.4f}, MAPE {report['mape_pct']:.1f} %)")
    for term, value in zip(terms, values):
        typer.echo(f"  {term}: {value:.4f}")
    if "speed_exponent" in calibration:
        typer.echo(f"  speed exponent: {calibration['speed_exponent']:.3f} (the share of the reference's changes of "
                   f"speed the children do not share)")
    if "entry_corrections" in calibration:
        import numpy as np

        corrections = np.abs(calibration["entry_corrections"])
        typer.echo(f"  corrections of {len(corrections)} entries and cells: median {100 * np.median(corrections):.1f} %, "
                   f"largest {100 * corrections.max():.1f} %")


def _epochs(name: str, what: str | None = None):
    return Annotated[int, typer.Option(f"--{name}-epochs", min=1, help=f"Epochs of {what or 'stage ' + name}.")]


PretrainEpochs = _epochs("pretrain")
SearchEpochs = _epochs("search")
FinetuneEpochs = _epochs("finetune")


@app.command()
def train(
    dataset: Annotated[str, typer.Option("--dataset", help="cifar10, cifar100, tinyimagenet, imagenet, digits, cluttered-digits(-64), cluttered-mnist(-64), or imagefolder (your own train/<class>/ and val/<class>/ images).")] = TrainConfig.dataset,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Dataset folder (not needed for the digits data sets).")] = TrainConfig.data_dir,
    resolution: Annotated[int | None, typer.Option("--resolution", "-r", help="imagefolder's resolution: 32, 64 or 224 (the named data sets have their own).")] = TrainConfig.resolution,
    stage: Annotated[str, typer.Option("--stage", help="pretrain, search, finetune, mobilenetv2 or all.")] = "all",
    out: Annotated[Path | None, typer.Option("--out", help="Run folder (default runs/train-<dataset>).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a stage from its last finished epoch.")] = False,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda (under torchrun: one GPU per process).")] = TrainConfig.device,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data-loading processes.")] = TrainConfig.workers,
    seed: Annotated[int, typer.Option("--seed", help="Seed of weights, sampling and data order.")] = TrainConfig.seed,
    limit_train: Annotated[int | None, typer.Option("--limit-train", min=1, help="Use a fixed subset of N training images.")] = TrainConfig.limit_train,
    limit_val: Annotated[int | None, typer.Option("--limit-val", min=1, help="Use a fixed subset of N validation images.")] = TrainConfig.limit_val,
    holdout: Annotated[float, typer.Option("--holdout", min=0.0, max=0.99, help="Share of the training images no "
                                           "stage trains on (the one-shot baseline chooses its frontier on them).")] = TrainConfig.holdout,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    cell_merge: CellMerge = TrainConfig.cell_merge,
    memory_format: Annotated[str, typer.Option("--memory-format", help="channels_last (default: faster on CPUs) or contiguous (PyTorch's default layout).")] = TrainConfig.memory_format,
    pretrain_epochs: PretrainEpochs = TrainConfig.pretrain_epochs,
    pretrain_lr: Annotated[float, typer.Option("--pretrain-lr", help="SGD learning rate of pre-training.")] = TrainConfig.pretrain_lr,
    pretrain_batch: Annotated[int, typer.Option("--pretrain-batch", min=1, help="Batch size of pre-training.")] = TrainConfig.pretrain_batch,
    momentum: Annotated[float, typer.Option("--momentum", help="SGD momentum (meta-graph).")] = TrainConfig.momentum,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="SGD weight decay (meta-graph).")] = TrainConfig.weight_decay,
    final_drop_path: Annotated[float, typer.Option("--final-drop-path", help="(Mean) drop-path rate reached at the end of pre-training.")] = TrainConfig.final_drop_path,
    pretrain_schedule: Annotated[str, typer.Option("--pretrain-schedule", help="shrinking (default: per-image drop rates, cosine lr) or paper (one rate, step decay).")] = TrainConfig.pretrain_schedule,
    pretrain_init: Annotated[str, typer.Option("--pretrain-init", help="scratch (default, the paper) or mobilenetv2: start from the run's trained MobileNetV2 stage (trained first).")] = TrainConfig.pretrain_init,
    search_epochs: SearchEpochs = TrainConfig.search_epochs,
    controller_lr: Annotated[float, typer.Option("--controller-lr", help="Adam learning rate of the controller.")] = TrainConfig.controller_lr,
    metagraph_lr: Annotated[float, typer.Option("--metagraph-lr", help="SGD learning rate of the meta-graph epochs of the search.")] = TrainConfig.metagraph_lr,
    search_momentum: Annotated[float, typer.Option("--search-momentum", min=0.0, help="SGD momentum of the meta-graph epochs of the search (the authors': 0).")] = TrainConfig.search_momentum,
    search_weight_decay: Annotated[float, typer.Option("--search-weight-decay", min=0.0, help="SGD weight decay of the meta-graph epochs of the search (the authors': 0).")] = TrainConfig.search_weight_decay,
    search_batch: Annotated[int, typer.Option("--search-batch", min=1, help="Batch size of the search.")] = TrainConfig.search_batch,
    reward: Annotated[str, typer.Option("--reward", help="Latency reward: graded (default) or paper (eq. 2 as published); see README.")] = TrainConfig.reward,
    alpha: Annotated[float, typer.Option("--alpha", help="Encouragement α: p' = α·p + (1 − α)(1 − p).")] = TrainConfig.alpha,
    entropy_weight: Annotated[float, typer.Option("--entropy-weight", help="Weight of the entropy term.")] = TrainConfig.entropy_weight,
    reward_correct: Annotated[float, typer.Option("--reward-correct", help="R_T of a correct prediction (R = R_T·R_A).")] = TrainConfig.reward_correct,
    reward_wrong: Annotated[float, typer.Option("--reward-wrong", help="R of a wrong prediction.")] = TrainConfig.reward_wrong,
    upper_start: Annotated[float, typer.Option("--upper-start", help="U_0 as a fraction of the full meta-graph's LUT latency.")] = TrainConfig.upper_start,
    upper_end: Annotated[float, typer.Option("--upper-end", help="Last U_t as a fraction of the MobileNetV2-like latency.")] = TrainConfig.upper_end,
    finetune_epochs: FinetuneEpochs = TrainConfig.finetune_epochs,
    finetune_lr: Annotated[float, typer.Option("--finetune-lr", help="Adam learning rate of re-training (cosine annealed).")] = TrainConfig.finetune_lr,
    finetune_batch: Annotated[int, typer.Option("--finetune-batch", min=1, help="Batch size of re-training.")] = TrainConfig.finetune_batch,
    snapshot: Annotated[int | None, typer.Option("--snapshot", min=0, help="Search epoch whose controller to fine-tune (default: last).")] = TrainConfig.snapshot,
    from_scratch: Annotated[bool, typer.Option("--from-scratch/--from-search", help="Re-train the meta-graph from scratch (paper) or from the search's weights.")] = TrainConfig.from_scratch,
    tensorboard: TensorBoard = True,
) -> None:
    """Train InstaNAS: pre-train the meta-graph, search the controller, fine-tune its policy; and the MobileNetV2 baseline."""
    from instanas.training.stages import run_stage

    if stage != "all" and stage not in STAGES:
        raise InstaNASError(f"unknown stage {stage!r} (choose from {', '.join(STAGES)} or all)")
    values = locals()
    config = TrainConfig(**{field.name: values[field.name] for field in dataclasses.fields(TrainConfig)})
    stages = [stage] if stage != "all" else sorted(STAGES, key=lambda name: (
        name != "mobilenetv2" if pretrain_init == "mobilenetv2" else 0))  # the start of pre-training goes first
    out = out or Path("runs") / f"train-{dataset}"
    table = None
    if "search" in stages:
        from instanas.data import dataset_info
        from lut.store import default_store, resolve_table

        table = resolve_table(dataset_info(dataset, resolution, data_dir).resolution, path=lut, store=default_store(), threads=None,
                              allow_foreign=allow_foreign_lut, merge=cell_merge, backend=None)
    for name in stages:
        with _interruptible(f"finished epochs are kept in {out}; continue with --stage {name} --resume"):
            history = run_stage(name, config, out, resume=resume, table=table, tensorboard=tensorboard)
        last = history[-1] if history else {}
        figures = ", ".join(f"{key} {value:.4g}" for key, value in last.items() if key.startswith("val_"))
        typer.echo(f"{name}: {len(history)} epochs in {out}; last epoch: {figures}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Option("--run", help="The training run folder.", file_okay=False)],
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="finetune.pt (default) or a search snapshot.")] = None,
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Dataset folder, if it moved since training.")] = None,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    measure: Annotated[int, typer.Option("--measure", min=0, help="Measure the N most frequent architectures (0: LUT only).")] = 20,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timing per measured network.")] = 0.2,
    out: Annotated[Path | None, typer.Option("--out", help="Report folder (default <run>/evaluation).")] = None,
    baseline: Annotated[Path | None, typer.Option("--baseline", help="MobileNetV2 checkpoint to compare with (default <run>/mobilenetv2.pt).")] = None,
) -> None:
    """Accuracy, chosen architectures and per-image latency (LUT and measured, controller included) vs MobileNetV2."""
    from instanas.evaluate import evaluate_run
    from instanas.training.checkpoints import read_run
    from lut.store import default_store, resolve_table

    saved = read_run(run)
    table = resolve_table(saved["resolution"], path=lut, store=default_store(), threads=None,
                          allow_foreign=allow_foreign_lut, merge=saved["cell_merge"], backend=None)
    report = evaluate_run(run, table, checkpoint=checkpoint, data_dir=data_dir, measure=measure, min_run_time=min_time,
                          out=out, baseline=baseline)
    lines = [
        f"accuracy {100 * report['accuracy']:.2f} % on {report['images']} {report['dataset']} images, "
        f"{report['distinct_architectures']} distinct architectures",
        f"latency (LUT, controller included): {report['lut_ms']['mean']:.2f} ± {report['lut_ms']['std']:.2f} ms",
    ]
    if "measured_ms" in report:
        measured = report["measured_ms"]
        lines.append(f"latency (measured, {100 * measured['images_covered']:.0f} % of images): "
                     f"{measured['mean']:.2f} ± {measured['std']:.2f} ms")
    if "mobilenetv2" in report:
        versus = report["mobilenetv2"]
        spearman = versus["spearman_latency_vs_baseline_confidence"]
        lines.append(f"MobileNetV2 1.0×: accuracy {100 * versus['accuracy']:.2f} %, {versus['lut_ms']:.2f} ms (LUT); "
                     f"InstaNAS / MobileNetV2 latency {versus['instanas_lut_ms_ratio']:.3f}; Spearman(latency, "
                     f"baseline confidence) {'undefined' if spearman is None else f'{spearman:+.3f}'}")
    if "by_clutter" in report:
        spearman = report["spearman_latency_vs_clutter"]
        lines += [f"clutter {row['clutter']} ({row['images']} images): accuracy {100 * row['accuracy']:.1f} %, "
                  f"{row['lut_ms_mean']:.2f} ms (LUT)" for row in report["by_clutter"] if row["images"]]
        lines.append(f"Spearman(latency, clutter) {'undefined' if spearman is None else f'{spearman:+.3f}'}")
    typer.echo("\n".join(lines) + f"\nreport: {(out or run / 'evaluation') / 'report.json'}")


@app.command()
def compare(
    run: Annotated[Path, typer.Option("--run", help="The training run folder (its data, pre-training and search).", file_okay=False)],
    resolution: Annotated[int | None, typer.Option("--resolution", "-r", help="Check that the run trains at this resolution.")] = None,
    method: Annotated[list[str] | None, typer.Option("--method", help="mobilenetv2, oneshot, blockdrop, convnet-aig, instanas; may be repeated (default: all).")] = None,
    widths: Annotated[str, typer.Option("--widths", help="MobileNetV2 width multipliers, comma-separated.")] = ",".join(f"{width:g}" for width in WIDTHS),
    data_dir: Annotated[str | None, typer.Option("--data-dir", help="Dataset folder, if it moved since training.")] = None,
    lut: LutPath = None,
    allow_foreign_lut: AllowForeign = False,
    oneshot_samples: Annotated[int, typer.Option("--oneshot-samples", min=1, help="Children the one-shot baseline scores on the held-out images (batch norm re-estimated for each).")] = CompareOptions.oneshot_samples,
    retrain: Annotated[bool, typer.Option("--retrain", help="Re-train one-shot frontier points (cheapest to richest) from scratch.")] = CompareOptions.retrain,
    oneshot_retrain_points: Annotated[int, typer.Option("--oneshot-retrain-points", min=1, help="How many one-shot frontier points --retrain trains, spread over latency.")] = CompareOptions.oneshot_retrain_points,
    retrain_snapshots: Annotated[str, typer.Option("--retrain-snapshots", help="InstaNAS search snapshots to re-train with the recipe: spread (five, first and last included), all, none, or epochs like 0,5,19.")] = CompareOptions.retrain_snapshots,
    measure: Annotated[int, typer.Option("--measure", min=0, help="Measure each point's N most frequent networks (0: LUT only).")] = CompareOptions.measure,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timing per measured network.")] = CompareOptions.min_run_time,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default <run>/compare).")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda, for training and evaluation.")] = CompareOptions.device,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data-loading processes.")] = TrainConfig.workers,
    finetune_epochs: Annotated[int | None, typer.Option("--finetune-epochs", min=1, help="Epochs of re-training (MobileNetV2 widths, one-shot --retrain); default: the run's mobilenetv2 stage's.")] = None,
    finetune_lr: Annotated[float | None, typer.Option("--finetune-lr", help="Adam learning rate of re-training; default: as the run's mobilenetv2 stage.")] = None,
    finetune_batch: Annotated[int | None, typer.Option("--finetune-batch", min=1, help="Batch size of re-training; default: as the run's mobilenetv2 stage.")] = None,
    blockdrop_curriculum_epochs: Annotated[int, typer.Option("--blockdrop-curriculum-epochs", min=1, help="Epochs of BlockDrop's curriculum.")] = BlockDropSettings.curriculum_epochs,
    blockdrop_joint_epochs: Annotated[int, typer.Option("--blockdrop-joint-epochs", min=1, help="Epochs of BlockDrop's joint fine-tuning.")] = BlockDropSettings.joint_epochs,
    blockdrop_lr: Annotated[float, typer.Option("--blockdrop-lr", help="Adam learning rate of the curriculum.")] = BlockDropSettings.lr,
    blockdrop_joint_lr: Annotated[float, typer.Option("--blockdrop-joint-lr", help="Adam learning rate of joint fine-tuning.")] = BlockDropSettings.joint_lr,
    blockdrop_entropy_weight: Annotated[float, typer.Option("--blockdrop-entropy-weight", help="Entropy weight of the curriculum.")] = BlockDropSettings.entropy_weight,
    blockdrop_penalty: Annotated[float, typer.Option("--blockdrop-penalty", help="γ, the reward of a wrong prediction (curriculum).")] = BlockDropSettings.penalty,
    blockdrop_joint_penalty: Annotated[float, typer.Option("--blockdrop-joint-penalty", help="γ in joint fine-tuning.")] = BlockDropSettings.joint_penalty,
    blockdrop_alpha: Annotated[float, typer.Option("--blockdrop-alpha", help="BlockDrop's probability bounding α.")] = BlockDropSettings.alpha,
    blockdrop_batch: Annotated[int, typer.Option("--blockdrop-batch", min=1, help="Batch size of BlockDrop.")] = BlockDropSettings.batch,
    aig_epochs: Annotated[int, typer.Option("--aig-epochs", min=1, help="Epochs of ConvNet-AIG.")] = ConvNetAIGSettings.epochs,
    aig_lr: Annotated[float, typer.Option("--aig-lr", help="SGD learning rate of ConvNet-AIG (step decay at 150/350, 250/350).")] = ConvNetAIGSettings.lr,
    aig_momentum: Annotated[float, typer.Option("--aig-momentum", help="SGD momentum of ConvNet-AIG.")] = ConvNetAIGSettings.momentum,
    aig_weight_decay: Annotated[float, typer.Option("--aig-weight-decay", help="SGD weight decay of ConvNet-AIG.")] = ConvNetAIGSettings.weight_decay,
    aig_target: Annotated[float, typer.Option("--aig-target", min=0.0, max=1.0, help="Target fraction of images each gate runs.")] = ConvNetAIGSettings.target,
    aig_loss_weight: Annotated[float, typer.Option("--aig-loss-weight", help="Weight of the target-rate loss.")] = ConvNetAIGSettings.loss_weight,
    aig_batch: Annotated[int, typer.Option("--aig-batch", min=1, help="Batch size of ConvNet-AIG.")] = ConvNetAIGSettings.batch,
    tensorboard: TensorBoard = CompareOptions.tensorboard,
) -> None:
    """InstaNAS against MobileNetV2 (widths), one-shot, BlockDrop and ConvNet-AIG: table and frontier plot."""
    from instanas.compare import compare as run_compare
    from instanas.compare import comparison_config, markdown_table
    from instanas.training.checkpoints import read_run
    from lut.store import default_store, resolve_table

    values = locals()
    saved = read_run(run)
    if resolution is not None and resolution != saved["resolution"]:
        raise InstaNASError(f"{run}: the run trains at {saved['resolution']} px, not {resolution} px")
    options = CompareOptions(
        methods=tuple(method) if method else METHODS, widths=parse_widths(widths), oneshot_samples=oneshot_samples,
        retrain=retrain, oneshot_retrain_points=oneshot_retrain_points, retrain_snapshots=retrain_snapshots, measure=measure, min_run_time=min_time, device=device, tensorboard=tensorboard,
        blockdrop=_settings(BlockDropSettings, "blockdrop_", values),
        convnet_aig=_settings(ConvNetAIGSettings, "aig_", values))
    recipe = {"finetune_epochs": finetune_epochs, "finetune_lr": finetune_lr, "finetune_batch": finetune_batch}
    config = comparison_config(run, data_dir=data_dir, workers=workers, device=device, recipe=recipe)
    table = resolve_table(saved["resolution"], path=lut, store=default_store(), threads=None, allow_foreign=allow_foreign_lut,
                          merge=saved["cell_merge"], backend=None)
    out = out or run / "compare"
    with _interruptible(f"finished epochs and scores are kept in {run}; run the same command to continue"):
        frame = run_compare(run, config, table, options, out)
    typer.echo(markdown_table(frame) + f"\ntable: {out / 'table.md'}, {out / 'table.csv'}; plot: {out / 'frontier.png'}")


def _settings(kind, prefix: str, values: dict):
    """A settings dataclass from the options named ``prefix`` + each of its fields (every field has one: tested)."""
    return kind(**{field.name: values[prefix + field.name] for field in dataclasses.fields(kind)})


@app.command()
def ablation(
    run: Annotated[list[Path], typer.Option("--run", help="A training run folder; repeat. The first is the reference.", file_okay=False)],
    baseline: Annotated[Path, typer.Option("--baseline", help="The MobileNetV2 1.0× checkpoint every run is compared with.", dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder (ablation.md, ablation.csv, search.png).", file_okay=False)],
    lut: Annotated[list[Path] | None, typer.Option("--lut", help="LUT files, one per cell merge the runs use (default: this machine's newest of each).")] = None,
    allow_foreign_lut: AllowForeign = False,
) -> None:
    """Training runs side by side, one setting changed in each: search trajectory and re-trained result."""
    from instanas.ablation import ablation as run_ablation
    from instanas.ablation import markdown
    from instanas.training.checkpoints import read_run
    from lut.store import default_store, load_table, resolve_table

    resolution = read_run(run[0])["resolution"]
    given = {load_table(path).cell_merge: path for path in lut or []}

    def table_for(merge: str):
        return resolve_table(resolution, path=given.get(merge), store=default_store(), threads=None,
                             allow_foreign=allow_foreign_lut, merge=merge, backend=None)

    frame = run_ablation(run, table_for, baseline, out)
    typer.echo(markdown(frame) + f"\ntable: {out / 'ablation.md'}; plot: {out / 'search.png'}")


@lut_app.command("list")
def lut_list(out: Store = None) -> None:
    """List stored LUT versions per machine and resolution."""
    from lut.store import default_store, list_tables

    store = out or default_store()
    tables = list_tables(store)
    if tables.empty:
        typer.echo(f"no LUTs under {store}")
        return
    for fingerprint, group in tables.groupby("fingerprint", sort=False):
        described = group.dropna(subset=["cpu"])
        machine = described.iloc[-1] if len(described) else None
        title = f"machine {fingerprint}" + (
            f": {machine.cpu}, {int(machine.threads)} threads, torch {machine.torch}, {machine.backend}"
            if machine is not None else ""
        )
        table = Table(title=title, title_justify="left")
        for column in ("path", "resolution", "version", "created", "problem"):
            table.add_column(column)
        for row in group.itertuples(index=False):
            table.add_row(row.path, str(row.resolution), str(row.version), row.created or "", row.problem)
        console.print(table)


@lut_app.command("show")
def lut_show(path: Annotated[Path, typer.Argument(help="A LUT file.")]) -> None:
    """Show a LUT's machine, settings and entries."""
    from lut.store import load_table

    lut_table = load_table(path)
    fields = lut_table.meta["fingerprint"]["fields"]
    console.print(
        f"{path}: {lut_table.resolution} px, version {lut_table.version}, created {lut_table.meta['created']}\n"
        f"machine {lut_table.fingerprint_id}: {fields.get('cpu_model')}, {lut_table.threads} threads, "
        f"torch {fields.get('torch_version')}, malloc {fields.get('malloc', 'system (not recorded)')}, "
        f"backend {lut_table.backend} {fields.get('backend_version', fields.get('torch_version'))}\n"
        f"settings: {lut_table.meta['settings']}\n"
        f"estimate: full meta-graph {lut_table.estimate(full_architecture()):.3f} ms, "
        f"smallest {lut_table.estimate(smallest_architecture()):.3f} ms"
    )
    table = Table()
    for column in ("entry", "median ms", "IQR ms", "rounds (ms)", "runs"):
        table.add_column(column, justify="right")
    order = {key: index for index, key in enumerate(profiled_keys())}
    for row in lut_table.entries.sort_values("key", key=lambda keys: keys.map(order)).itertuples():
        rounds_text = " ".join(f"{value:.4f}" for value in row.round_medians_ms)
        table.add_row(row.key, f"{row.median_ms:.4f}", f"{row.iqr_ms:.4f}", rounds_text, str(row.runs))
    console.print(table)


@lut_app.command("diff")
def lut_diff(
    before: Annotated[Path, typer.Argument(help="The reference LUT file.")],
    after: Annotated[Path, typer.Argument(help="The LUT file to compare with it.")],
    top: Annotated[int, typer.Option("--top", min=1, help="How many entries to list.")] = 20,
    architectures: Annotated[
        int, typer.Option("--architectures", min=1, help="Random architectures whose estimates are compared.")
    ] = 2000,
    as_json: AsJson = False,
) -> None:
    """Per-entry relative change from one LUT to another, largest first, and how far architectures' estimates move
    (drift between days, machines, versions)."""
    from lut.store import load_table
    from lut.table import compare_tables, estimate_drift

    first, second = load_table(before), load_table(after)
    if first.resolution != second.resolution:
        raise InstaNASError(f"{before} is for {first.resolution} px but {after} is for {second.resolution} px")
    changes = compare_tables(first, second)
    absolute = changes["change_pct"].abs()
    summary = {
        "entries": len(changes),
        "median_abs_change_pct": float(absolute.median()),
        "worst_entry": changes.iloc[0]["key"],
        "worst_change_pct": float(changes.iloc[0]["change_pct"]),
        "full_estimate_ms": [first.estimate(full_architecture()), second.estimate(full_architecture())],
        **estimate_drift(first, second, correlation_sample(architectures, seed=0)[0]),
    }
    if as_json:
        _emit_json({**summary, "changes": changes.head(top).to_dict(orient="records")})
        return
    table = Table(title=f"{before} → {after}")
    for column in ("entry", "before ms", "after ms", "change"):
        table.add_column(column, justify="right")
    for row in changes.head(top).itertuples():
        table.add_row(row.key, f"{row.median_ms_before:.4f}", f"{row.median_ms_after:.4f}", f"{row.change_pct:+.1f} %")
    console.print(table)
    console.print(
        f"{summary['entries']} entries: median |change| {summary['median_abs_change_pct']:.1f} %, "
        f"worst {summary['worst_entry']} {summary['worst_change_pct']:+.1f} %; full meta-graph estimate "
        f"{summary['full_estimate_ms'][0]:.2f} → {summary['full_estimate_ms'][1]:.2f} ms"
    )
    console.print(
        f"{summary['architectures']:,} random architectures: estimates moved {summary['estimate_change_pct_median']:+.2f} % "
        f"(median; |change| median {summary['estimate_abs_change_pct_median']:.2f} %, p95 "
        f"{summary['estimate_abs_change_pct_p95']:.2f} %) = anchor {summary['anchor_change_pct']:+.2f} % "
        f"({summary['anchor_ms'][0]:.3f} → {summary['anchor_ms'][1]:.3f} ms) and ratios "
        f"{summary['ratio_change_pct_median']:+.2f} % (median)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    warnings.formatwarning = lambda message, category, *_: f"warning: {message}\n"
    try:
        result = app(args=argv, standalone_mode=False)
    except InstaNASError as error:
        typer.echo(f"error: {error}", err=True)
        return 2
    except OSError as error:  # a file or folder that cannot be made, read or written: --out on a read-only disk, …
        where = f"{error.filename}: " if error.filename else ""
        typer.echo(f"error: {where}{error.strerror or error}", err=True)
        return 2
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except Exception as error:
        # Usage errors (unknown option, bad type, missing value) are click exceptions, which typer now vendors
        # privately: recognise them by their public interface instead of importing a private module.
        if not callable(getattr(error, "format_message", None)):
            raise
        typer.echo(f"error: {error.format_message()}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())

"""Commands on the search space and its tables: space, sample, export, profile, estimate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from instanas.cli.app import app
from instanas.cli.options import (
    AllowForeign,
    AsJson,
    Backend,
    CellMerge,
    LutPath,
    Mode,
    Resolution,
    Store,
    Threads,
    WaitForSpeed,
    console,
    emit_json,
    interruptible,
    show_waiting,
)
from instanas.errors import InstaNASError
from instanas.progress import progress_bar
from instanas.space import (
    MODULE_NAMES,
    RESOLUTIONS,
    edge_architectures,
    format_architecture,
    full_architecture,
    parse_architecture,
    sample_architectures,
    search_space,
    smallest_architecture,
)


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
        emit_json({"resolution": resolution, "architectures": count, "cells": cells})
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
def export(
    resolution: Resolution,
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture string, 17 tokens like 10001, or a network "
                                      "outside the space: shufflenet_v2_x0_5 … x2_0, resnet18 … resnet152.")],
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
    from instanas.baselines.references import is_reference, seeded_reference
    from instanas.space import check_merge
    from profiler.backends import ONNX_OPSET, check_backend, export_difference, network_onnx, seeded_child

    reference = is_reference(arch)
    selection = None if reference else parse_architecture(arch)
    search_space(resolution)
    check_merge(cell_merge)
    check_backend("onnxruntime")
    if reference:
        child = seeded_reference(arch, resolution, seed)
    else:
        child = seeded_child(selection, resolution, merge=cell_merge, seed=seed)
    graph = network_onnx(child, torch.randn(1, 3, resolution, resolution))
    check_input = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed + 1))
    difference, scale = export_difference(child, graph, check_input)
    if difference > tolerance * max(1.0, scale):
        raise InstaNASError(f"{out}: ONNX Runtime's output differs from PyTorch's by {difference:.2e} (largest output "
                            f"{scale:.2e}, tolerance {tolerance:g}); nothing written")
    atomic_write(out, graph)
    typer.echo(f"{out}: {arch if reference else format_architecture(selection)} @ {resolution} px, {len(graph) / 1e6:.1f} MB, opset "
               f"{ONNX_OPSET}; ONNX Runtime against PyTorch on a random input: max abs difference {difference:.2e} "
               f"(largest output {scale:.2e})")



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
            with interruptible(f"finished measurements kept in {run.journal.path}; rerun with --resume",
                                before=run.close), progress_bar() as progress:
                label = f"profile {res} px" + (f" ({backend})" if backend != "eager" else "")
                bar = progress.add_task(label, total=run.total, completed=run.done, status="")
                if gate:
                    gate.on_wait = show_waiting(progress, bar, f"{speed_of.name}'s", gate.anchor_ms, wait_for_speed)
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
        emit_json(result)
    else:
        typer.echo(f"{result['arch']} @ {resolution} px: {result['estimate_ms']:.3f} ms ({mode}, LUT {table.path})")



"""The ``instanas`` command: parse, call the library, print. No logic of its own.

User errors (bad values, files, folders) end as one line on stderr with exit code 2; see :func:`main`.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from instanas.errors import InstaNASError
from instanas.space import MODULE_NAMES, format_architecture, parse_architecture, sample_architectures, search_space

app = typer.Typer(
    help="InstaNAS latency profiling and benchmarking: search space, lookup tables, correlation, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()

Resolution = Annotated[int, typer.Option("--resolution", "-r", help="Input resolution: 32, 64 or 224.")]
Threads = Annotated[
    Optional[int], typer.Option("--threads", "-t", min=1, help="Intra-op threads (default: physical cores).")
]
AsJson = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


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
    n: Annotated[int, typer.Option("-n", min=0, help="How many architectures.")] = 10,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default: fresh entropy).")] = None,
    keep: Annotated[float, typer.Option("--keep", help="Probability of keeping each module, in (0, 1].")] = 0.5,
) -> None:
    """Print N valid random architectures, one string per line."""
    search_space(resolution)  # rejects an unsupported resolution
    for arch in sample_architectures(n, keep=keep, seed=seed):
        typer.echo(format_architecture(arch))


@app.command()
def measure(
    resolution: Resolution,
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture string, 17 tokens like 10001.")],
    threads: Threads = None,
    min_time: Annotated[float, typer.Option("--min-time", min=0.01, help="Seconds of timed runs.")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and input.")] = 0,
    as_json: AsJson = False,
) -> None:
    """Build one child network and measure its real batch-1 CPU latency."""
    import torch

    from instanas.metagraph import MetaGraph
    from profiler import default_threads, measure_latency

    selection = parse_architecture(arch)
    search_space(resolution)
    torch.manual_seed(seed)
    child = MetaGraph(resolution).child(selection).eval()
    threads = threads or default_threads()
    stats = measure_latency(child, torch.randn(1, 3, resolution, resolution), threads=threads, min_run_time=min_time)
    result = {"arch": format_architecture(selection), "resolution": resolution, "threads": threads, **stats.as_dict()}
    if as_json:
        _emit_json(result)
        return
    typer.echo(
        f"{result['arch']} @ {resolution} px, {threads} threads: median {stats.median_ms:.3f} ms, "
        f"IQR {stats.iqr_ms:.3f} ms over {stats.runs} runs × {stats.calls_per_run} calls"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and exit code 2, never a traceback."""
    try:
        result = app(args=argv, standalone_mode=False)
    except InstaNASError as error:
        typer.echo(f"error: {error}", err=True)
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

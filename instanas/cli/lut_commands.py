"""``instanas lut``: list, show and diff stored tables (reads only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from instanas.cli.app import app
from instanas.cli.options import (
    AsJson,
    Store,
    console,
    emit_json,
)
from instanas.errors import InstaNASError
from instanas.space import (
    correlation_sample,
    full_architecture,
    profiled_keys,
    smallest_architecture,
)

lut_app = typer.Typer(help="Inspect stored latency lookup tables.", no_args_is_help=True)
app.add_typer(lut_app, name="lut")


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
    from lut.drift import compare_tables, estimate_drift
    from lut.store import load_table

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
        emit_json({**summary, "changes": changes.head(top).to_dict(orient="records")})
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
    if summary["beyond_noise_share"] is None:
        console.print("a table of one profiling round: how much of this is its noise cannot be told")
        return
    console.print(
        f"beyond the tables' own noise (their profiling rounds: {summary['noise_pct_median']:.2f} % per estimate, "
        f"median): {100 * summary['beyond_noise_share']:.1f} % of the architectures; drift of the ratios with the "
        f"noise taken out {summary['ratio_drift_rms_pct']:.2f} % (RMS)"
    )



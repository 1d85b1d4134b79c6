"""Commands that measure networks against a table: measure, correlate, calibrate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from instanas.atomic import report_path
from instanas.cli.agreement import print_agreement
from instanas.cli.app import app
from instanas.cli.options import (
    DEFAULT_HARNESS,
    AllowForeign,
    AsJson,
    Backend,
    CellMerge,
    ChildMinTime,
    Group,
    LutPath,
    MinRuns,
    Mode,
    Passes,
    Processes,
    Repeat,
    Resolution,
    Threads,
    WaitForSpeed,
    WarmupCalls,
    emit_json,
    interruptible,
    run_folder,
    show_waiting,
)
from instanas.errors import InstaNASError
from instanas.progress import progress_bar
from instanas.space import (
    MODULE_NAMES,
    format_architecture,
    parse_architecture,
    search_space,
)
from profiler.harness import Harness


@app.command()
def measure(
    resolution: Resolution,
    arch: Annotated[str, typer.Option("--arch", "-a", help="Architecture string, 17 tokens like 10001, or a network "
                                      "outside the space: shufflenet_v2_x0_5 … x2_0, resnet18 … resnet152.")],
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

    from instanas.baselines.references import is_reference, seeded_reference
    from instanas.metagraph import MetaGraph
    from instanas.space import check_merge
    from profiler import default_threads, measure_latency
    from profiler.backends import check_backend

    reference = is_reference(arch)
    selection = None if reference else parse_architecture(arch)
    search_space(resolution)
    check_merge(cell_merge)
    check_backend(backend)
    table = _paired_table(resolution, lut, threads, cell_merge, allow_foreign_lut, backend) if paired else None
    threads = table.threads if table else threads or default_threads()
    torch.manual_seed(seed)
    if reference:  # outside the space: no LUT estimate, measured as a child is
        child = seeded_reference(arch, resolution, seed)
    else:
        child = MetaGraph(resolution, merge=cell_merge).child(selection).eval()
    image = torch.randn(1, 3, resolution, resolution)
    name = arch if reference else format_architecture(selection)
    result = {"arch": name, "resolution": resolution, "threads": threads, "backend": backend}
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
        }
        if selection is not None:
            result[f"estimate_{table.default_mode}_ms"] = table.estimate(selection, mode=table.default_mode)
    if as_json:
        emit_json(result)
        return
    typer.echo(
        f"{result['arch']} @ {resolution} px, {threads} threads, {backend}: median {stats.median_ms:.3f} ms, "
        f"IQR {stats.iqr_ms:.3f} ms over {stats.runs} runs × {stats.calls_per_run} calls"
    )
    if table is not None:
        typer.echo(
            f"paired: {result['paired_ms']:.3f} ms (IQR {result['paired_iqr_ms']:.3f} ms) = ratio {stats.ratio:.4f} to "
            f"the reference × the LUT's anchor {table.anchor_ms:.3f} ms × (reference now {stats.reference_ms:.3f} ms / "
            f"anchor) ^ {table.speed_exponent:.3f}; " + (
                f"LUT {table.default_mode} estimate {result[f'estimate_{table.default_mode}_ms']:.3f} ms"
                if selection is not None else "outside the search space: no LUT estimate")
        )



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



def _measure_children(table, out_dir: Path, label: str, children, harness, *, mode: str, resume: bool,
                      wait_for_speed: float) -> dict:
    """Run a correlation with a progress bar showing the running Pearson r; Ctrl-C keeps finished rows."""
    from lut.validation import CorrelationRun

    run = CorrelationRun(table, out_dir, children, harness, mode=mode, resume=resume,  # checks settings first
                         wait_for_speed_s=60 * wait_for_speed)
    with progress_bar() as progress:
        bar = progress.add_task(label, total=run.total, completed=len(run.finished), status="")

        def on_row(done: int, total: int, pearson: float) -> None:
            progress.update(bar, completed=done, status=f"r = {pearson:.4f}")

        def report_so_far() -> None:
            progress.stop()
            if len(run.measured) >= 3:
                report = run.finish()
                typer.echo(f"interrupted: report of the {report['n']} finished children in {out_dir}", err=True)

        with interruptible(f"finished rows kept in {out_dir / 'results.csv'}; rerun with --resume --out {out_dir}",
                            before=report_so_far):
            run.measure(on_row, show_waiting(progress, bar, "the table's", table.children_reference_ms,
                                              wait_for_speed))
    return run.finish()


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
    min_time: ChildMinTime = None,
    group: Group = None,
    warmup_calls: WarmupCalls = None,
    min_runs: MinRuns = None,
    passes: Passes = DEFAULT_HARNESS.passes,
    repeat: Repeat = DEFAULT_HARNESS.repeat,
    processes: Processes = DEFAULT_HARNESS.processes,
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
    out_dir = run_folder(out, f"correlate-{resolution}", resume)
    harness = Harness.for_backend(backend, min_run_time=min_time, group=group, warmup_calls=warmup_calls,
                                  min_runs=min_runs, passes=passes, repeat=repeat, processes=processes)
    report = _measure_children(table, out_dir, f"correlate {resolution} px", children, harness,
                               mode=mode or table.default_mode, resume=resume, wait_for_speed=wait_for_speed)
    print_agreement(report)
    typer.echo(f"results: {out_dir / 'results.csv'}\nreport: {out_dir / 'report.json'}\nplot: {out_dir / 'scatter.png'}")


@app.command()
def rescore(
    run: Annotated[Path, typer.Argument(help="A finished correlate or calibrate run folder.")],
    lut: Annotated[Path, typer.Option("--lut", help="The table to score: a version of the profile the run was "
                                      "measured against (e.g. a new calibration of it).")],
    out: Annotated[Path, typer.Option("--out", help="The new run folder (results.csv, run.json, report.json, "
                                      "scatter.png).")],
    mode: Mode = None,
) -> None:
    """Score another version of a table against children already measured, without timing them again."""
    from lut.report import rescore as rescore_run
    from lut.store import load_table

    table = load_table(lut)
    report = rescore_run(run, table, out, mode or table.default_mode)
    print_agreement(report)
    typer.echo(f"results: {out / 'results.csv'}\nreport: {out / 'report.json'}\nplot: {out / 'scatter.png'}")


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
    min_time: ChildMinTime = None,
    group: Group = None,
    warmup_calls: WarmupCalls = None,
    min_runs: MinRuns = None,
    passes: Passes = DEFAULT_HARNESS.passes,
    repeat: Repeat = DEFAULT_HARNESS.repeat,
    processes: Processes = DEFAULT_HARNESS.processes,
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
    weighting: Annotated[
        str,
        typer.Option("--weighting", help="absolute (default: least squares in milliseconds) or relative (every "
                     "child's relative error alike); they score the same here (docs/results/calibration-weighting/)."),
    ] = "absolute",
    few_kinds: Annotated[
        float,
        typer.Option("--few-kinds", min=0.0, max=0.5, help="Share of the children drawn from one or two module kinds "
                     "each, so that the fit sees networks that repeat a kind cell after cell (random children "
                     "never do; docs/results/validation-noise/few-kinds/); 0: random children only."),
    ] = 0.1,
    kind_repeats: Annotated[
        bool,
        typer.Option("--kind-repeats/--no-kind-repeats", help="Also fit, per module kind, a cost per module that runs "
                     "right after one of its own kind (not with --model linear)."),
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
    check_calibration_model(model, weighting)  # before any child is measured
    check_backend(backend)
    store = store or default_store()
    table = resolve_table(resolution, path=lut, store=store, threads=threads, allow_foreign=False, backend=backend)
    out_dir = run_folder(out, f"calibrate-{resolution}", resume)
    harness = Harness.for_backend(backend, min_run_time=min_time, group=group, warmup_calls=warmup_calls,
                                  min_runs=min_runs, passes=passes, repeat=repeat, processes=processes)
    children = Children.sampled(n, seed + CALIBRATION_STREAM, few_kinds)
    report = _measure_children(table, out_dir, f"calibrate {resolution} px", children, harness, mode="plain",
                               resume=resume, wait_for_speed=wait_for_speed)
    repeats = kind_repeats and model != "linear"
    calibration = calibration_from_results(table, out_dir / "results.csv", model, speed_correction, weighting,
                                           repeats) | {
        "measurements": report_path(out_dir), "harness": harness.settings()}
    if noise := report.get("repeat"):  # how steady the machine was while the fit's children were timed
        calibration["noise_pct"], calibration["noise_pairs"] = noise["noise_pct"], noise["pairs"]
    calibrated = save_calibrated(table, calibration, store)
    terms = calibration.get("terms", ["scale", "ms per module", "ms per network"])
    values = calibration.get("coefficients") or [calibration[key] for key in ("scale", "per_module_ms", "per_network_ms")]
    typer.echo(f"{calibrated.path}: {model} calibration fitted on {calibration['children']} children "
               f"(plain sum there: Pearson {report['pearson']:.4f}, MAPE {report['mape_pct']:.1f} %)")
    if "noise_pct" in calibration:
        typer.echo(f"  the machine's noise meanwhile: {calibration['noise_pct']:.2f} % per measurement "
                   f"({calibration['noise_pairs']} children timed twice)")
    for term, value in zip(terms, values):
        typer.echo(f"  {term}: {value:.4f}")
    for name, value in zip(MODULE_NAMES, calibration.get("kind_repeat_ms", [])):
        typer.echo(f"  ms per {name} right after a {name}: {value:.4f}")
    if "speed_exponent" in calibration:
        typer.echo(f"  speed exponent: {calibration['speed_exponent']:.3f} (the share of the reference's changes of "
                   f"speed the children do not share)")
    if "entry_corrections" in calibration:
        import numpy as np

        corrections = np.abs(calibration["entry_corrections"])
        typer.echo(f"  corrections of {len(corrections)} entries and cells: median {100 * np.median(corrections):.1f} %, "
                   f"largest {100 * corrections.max():.1f} %")



"""The printed summary of ``correlate`` and ``calibrate``: one row per figure, narrow enough for 80 columns."""

from __future__ import annotations

from rich.table import Table

from instanas.cli.options import console


def print_agreement(report: dict) -> None:
    from profiler.speed_gate import SAME_SPEED

    # one row per figure, one column per estimate: narrow enough for an 80-column terminal whatever the figures
    table = Table(title=f"LUT vs measured at {report['resolution']} px ({report['mode']} estimate)", title_justify="left")
    table.add_column("figure")
    modes = report["by_mode"]
    for mode in modes:
        table.add_column(mode, justify="right")
    figures = {
        "children": lambda numbers: str(numbers["n"]),
        "Pearson r": lambda numbers: f"{numbers['pearson']:.4f}",
        "Spearman ρ": lambda numbers: f"{numbers['spearman']:.4f}",
        "Kendall τ": lambda numbers: f"{numbers['kendall']:.4f}",
        "RMSE": lambda numbers: f"{numbers['rmse_ms']:.3f} ms",
        "MAPE": lambda numbers: f"{numbers['mape_pct']:.2f} %",
        "within ±5 %": lambda numbers: f"{100 * numbers['within_5pct']:.1f} %",
        "within ±10 %": lambda numbers: f"{100 * numbers['within_10pct']:.1f} %",
        "fit (measured =)": lambda numbers: f"{numbers['slope']:.3f}·est {numbers['intercept']:+.2f}",
    }
    for name, show in figures.items():
        table.add_row(name, *(show(numbers) for numbers in modes.values()))
    console.print(table)
    if "children" in report:
        chosen = Table(title="each architecture", title_justify="left")
        for column in ("label", "estimate ms", "measured ms", "error"):
            chosen.add_column(column, justify="left" if column == "label" else "right")
        for child in report["children"]:
            chosen.add_row(child["label"], f"{child['estimate_ms']:.3f}", f"{child['measured_ms']:.3f}",
                           f"{child['error_pct']:+.1f} %")
        console.print(chosen)
    print_noise(report)
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



def print_noise(report: dict) -> None:
    """The repeat beside the LUT, the LUT's error with the noise taken out, and the agreement per module count."""
    if noise := report.get("repeat"):
        across = noise.get("pairs_across_processes", 0)
        console.print(f"the machine's noise: {noise['pairs']} children timed twice, half a run apart"
                      + (f" ({across} in another process)" if across else ""))
        table = Table()
        for column in ("figure", "2nd vs 1st", "LUT vs 1st"):
            table.add_column(column, justify="left" if column == "figure" else "right")
        repeat, lut = noise["repeat"], noise["lut_same_children"]
        table.add_row("within ±5 %", f"{100 * repeat['within_5pct']:.1f} %", f"{100 * lut['within_5pct']:.1f} %")
        table.add_row("within ±10 %", f"{100 * repeat['within_10pct']:.1f} %", f"{100 * lut['within_10pct']:.1f} %")
        table.add_row("MAPE", f"{repeat['mape_pct']:.2f} %", f"{lut['mape_pct']:.2f} %")
        console.print(table)
        low, high = noise["corrected_rms_interval_pct"]
        console.print(f"LUT error, RMS: {noise['lut_rms_pct']:.2f} % measured, {noise['corrected_rms_pct']:.2f} % "
                      f"with one measurement's noise ({noise['noise_pct']:.2f} %) taken out (95 %: {low:.2f}–{high:.2f} %)")
        console.print(f"  of which a bias of {noise['lut_bias_pct']:+.2f} % (the whole run against the table) and "
                      f"{noise['corrected_spread_pct']:.2f} % around it")
    if parts := report.get("by_module_count"):
        table = Table(title="by module count (fifths)", title_justify="left")
        for column in ("modules", "children", "±5 %", "±10 %", "bias", "repeat ±5 %"):
            table.add_column(column, justify="right")
        for part in parts:
            repeat = f"{100 * part['repeat']['within_5pct']:.1f} %" if "repeat" in part else "–"
            table.add_row(part["modules"], str(part["n"]), f"{100 * part['within_5pct']:.1f} %",
                          f"{100 * part['within_10pct']:.1f} %", f"{part['bias_pct']:+.2f} %", repeat)
        console.print(table)
    print_trend(report)


def print_trend(report: dict) -> None:
    """The error's change across module counts; for a stale calibration, the advice to calibrate it again."""
    from lut.agreement import STALE_CHANGE_PCT, stale_calibration

    if not (trend := report.get("module_count_trend")):
        return
    low, high = trend["change_interval_pct"]
    console.print(f"the LUT's error from {trend['from_modules']:.0f} to {trend['to_modules']:.0f} modules (the outer "
                  f"fifths' middles): "
                  f"{trend['change_pct']:+.2f} % (95 %: {low:+.2f} to {high:+.2f} %)")
    if stale_calibration(trend, report["mode"]):
        backend = report["lut"].get("backend", "eager")
        console.print(f"  beyond ±{STALE_CHANGE_PCT:g} %, as a table calibrated in another state of the machine "
                      f"errs; calibrate it again: instanas calibrate -r {report['resolution']} --lut "
                      f"{report['lut']['path']}" + ("" if backend == "eager" else f" --backend {backend}"), markup=False)

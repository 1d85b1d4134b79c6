"""Two tables side by side (``instanas lut diff``): which entries changed, and how far architectures' estimates
moved — through the machine's speed (the anchor), through the ratios, and beyond the tables' own noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from lut.table import LatencyTable

# The estimate sums each entry's median over the profiling rounds, whose standard error is about sqrt(π/2) times that
# of their mean (1.16× at three rounds, 1.25× for many; the larger is taken, so that noise is not called drift).
MEDIAN_STANDARD_ERROR = np.sqrt(np.pi / 2)


def compare_tables(before: LatencyTable, after: LatencyTable) -> pd.DataFrame:
    """Per-entry relative change from ``before`` to ``after``, largest absolute change first."""
    joined = before.entries.set_index("key")[["median_ms"]].join(
        after.entries.set_index("key")[["median_ms"]], lsuffix="_before", rsuffix="_after", how="inner"
    )
    joined["change_pct"] = 100 * (joined["median_ms_after"] / joined["median_ms_before"] - 1)
    order = joined["change_pct"].abs().sort_values(ascending=False).index
    return joined.loc[order].reset_index()


def estimate_drift(before: LatencyTable, after: LatencyTable, archs: np.ndarray) -> dict:
    """How far the plain estimates of ``archs`` moved from ``before`` to ``after``, split into the anchor's change
    (the machine's speed while profiling: it scales every entry alike) and the change of the ratios to the reference
    (what the entries measure relative to one another and to the reference).

    A ratio's change is drift only beyond the tables' own noise: each table's profiling rounds, summed per round,
    give every architecture as many estimates as rounds; their spread (the standard error of the rounds' log
    estimates, scaled for the median the estimate takes) is that table's noise, and a change counts as drift beyond
    ``t · sqrt(σ_before² + σ_after²)``, ``t`` Student's 97.5 % quantile at the Welch–Satterthwaite degrees of
    freedom: a noise read off three rounds is itself uncertain (with 1.96 and the mean's standard error, 17 % of the
    architectures of two simulated profiles of one machine, 4 % noise per entry and round, moved "beyond" it).
    ``ratio_drift_rms_pct`` is the RMS change of the ratios with that noise taken out (0 when noise explains it).
    A table of one round has no noise to tell: these three are then None.
    """
    first, second = before.estimate(archs), after.estimate(archs)
    anchor = after.anchor_ms / before.anchor_ms
    total = 100 * (second / first - 1)
    ratios = 100 * (second / first / anchor - 1)
    log_change = np.log(second / first / anchor)
    (noise_before, rounds_before), (noise_after, rounds_after) = (_estimate_noise(table, archs)
                                                                  for table in (before, after))
    known = noise_before is not None and noise_after is not None
    if known:
        noise = np.hypot(noise_before, noise_after)
        freedom = noise**4 / (noise_before**4 / (rounds_before - 1) + noise_after**4 / (rounds_after - 1))
        critical = stats.t.ppf(0.975, np.nan_to_num(freedom, nan=rounds_before + rounds_after - 2))
    return {
        "architectures": int(len(archs)),
        "estimate_change_pct_median": float(np.median(total)),
        "estimate_abs_change_pct_median": float(np.median(np.abs(total))),
        "estimate_abs_change_pct_p95": float(np.percentile(np.abs(total), 95)),
        "anchor_ms": [before.anchor_ms, after.anchor_ms],
        "anchor_change_pct": float(100 * (anchor - 1)),
        "ratio_change_pct_median": float(np.median(ratios)),
        "ratio_abs_change_pct_median": float(np.median(np.abs(ratios))),
        "noise_pct_median": float(100 * np.median(noise)) if known else None,
        "beyond_noise_share": float(np.mean(np.abs(log_change) > critical * noise)) if known else None,
        "ratio_drift_rms_pct": (float(100 * np.sqrt(max(np.mean(log_change**2) - np.mean(noise**2), 0.0)))
                                if known else None),
    }


def _estimate_noise(table: LatencyTable, archs: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Per architecture, the standard error of the table's estimate from its profiling rounds (log scale): the
    estimate summed from each round's entries alone, spread over the rounds / sqrt(rounds), scaled for the median
    (at three rounds or more); and the number of rounds. None for one round."""
    rounds = min(len(values) for values in table.entries["round_medians_ms"])
    if rounds < 2:
        return None, rounds
    per_round = []
    for number in range(rounds):
        entries = table.entries.copy()
        entries["median_ms"] = [values[number] for values in entries["round_medians_ms"]]
        per_round.append(np.log(LatencyTable(table.meta, entries).estimate(archs)))
    scale = MEDIAN_STANDARD_ERROR if rounds >= 3 else 1.0  # the median of two rounds is their mean
    return scale * np.std(per_round, axis=0, ddof=1) / np.sqrt(rounds), rounds

"""Two tables side by side (``instanas lut diff``): which entries changed, and how far architectures' estimates
moved — through the machine's speed (the anchor), through the ratios, and beyond the tables' own noise."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lut.table import LatencyTable


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
    give every architecture as many estimates as rounds; their spread (standard error of the mean of the rounds' log
    estimates) is that table's noise, and a change counts as drift beyond ``1.96 · sqrt(σ_before² + σ_after²)``.
    ``ratio_drift_rms_pct`` is the RMS change of the ratios with that noise taken out (0 when noise explains it).
    A table of one round has no noise to tell: these three are then None.
    """
    first, second = before.estimate(archs), after.estimate(archs)
    anchor = after.anchor_ms / before.anchor_ms
    total = 100 * (second / first - 1)
    ratios = 100 * (second / first / anchor - 1)
    log_change = np.log(second / first / anchor)
    noise = _estimate_noise(before, archs), _estimate_noise(after, archs)
    known = noise[0] is not None and noise[1] is not None
    noise = np.hypot(*noise) if known else None
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
        "beyond_noise_share": float(np.mean(np.abs(log_change) > 1.96 * noise)) if known else None,
        "ratio_drift_rms_pct": (float(100 * np.sqrt(max(np.mean(log_change**2) - np.mean(noise**2), 0.0)))
                                if known else None),
    }


def _estimate_noise(table: LatencyTable, archs: np.ndarray) -> np.ndarray | None:
    """Per architecture, the standard error of the table's estimate from its profiling rounds (log scale): the
    estimate summed from each round's entries alone, spread over the rounds / sqrt(rounds). None for one round."""
    rounds = min(len(values) for values in table.entries["round_medians_ms"])
    if rounds < 2:
        return None
    per_round = []
    for number in range(rounds):
        entries = table.entries.copy()
        entries["median_ms"] = [values[number] for values in entries["round_medians_ms"]]
        per_round.append(np.log(LatencyTable(table.meta, entries).estimate(archs)))
    return np.std(per_round, axis=0, ddof=1) / np.sqrt(rounds)

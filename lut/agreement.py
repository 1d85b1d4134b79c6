"""How well estimates agree with measurements, and how well measurements agree with themselves: the statistics of
``correlate``'s and ``calibrate``'s reports (:mod:`lut.validation` takes the measurements).

The figures of agreement (correlations, MAPE, shares within ±5/±10 %, the fit), per module-count fifth, at the
table's speed; the repeat share (which children are timed twice, and when), and the LUT's error with the machine's
own noise taken out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from profiler.speed_gate import at_speed

REPEAT_STREAM = 7_919  # seeds the choice of the children timed twice
STALE_CHANGE_PCT = 1.0  # an error that moves this much across module counts calls for a new calibration


def repeated_children(n: int, share: float) -> np.ndarray:
    """The children timed twice: ``ceil(share · n)`` of them (at most half), a fixed choice among the first half of
    the run, in index order, so that each second measurement can come half a run after its first."""
    first_half = n - _delay(n)
    count = min(first_half, int(np.ceil(share * n - 1e-9))) if share > 0 else 0
    return np.sort(np.random.default_rng(REPEAT_STREAM).choice(first_half, count, replace=False))


def _delay(n: int) -> int:
    return max(n // 2, 1)


def measurement_plan(n: int, repeated: np.ndarray) -> list[int]:
    """The order of measurements: ``0 … n-1`` time each child once, in order; ``n + j`` times ``repeated[j]`` again
    half a run after its first measurement (its two timings meet the machine at different moments); a child of the
    second half, which :func:`repeated_children` does not choose, would go last."""
    keys = [(float(child), child) for child in range(n)]
    keys += [(min(int(child) + _delay(n), n - 1) + 0.5, n + j) for j, child in enumerate(repeated)]
    return [measurement for _, measurement in sorted(keys)]


def process_parts(plan: list[int], n: int, processes: int) -> list[list[int]]:
    """``plan`` (of ``n`` children) cut into ``processes`` consecutive parts, each timed in its own process, at the
    first measurements of children ``k·n/processes``; a second measurement goes with the child it follows. A process's
    own offset (whole runs here differ by up to 3–4 %, docs/results/xeon/repeatability.md) then falls on a share of
    the children, and with two parts or more every second measurement — half a run later — is taken in another
    process than its first."""
    parts: list[list[int]] = [[] for _ in range(processes)]
    latest = 0  # the child whose first measurement came last
    for measurement in plan:
        latest = measurement if measurement < n else latest
        parts[processes * latest // n].append(measurement)
    return [part for part in parts if part]


def errors(estimate: np.ndarray, measured: np.ndarray) -> dict:
    """Relative errors of ``estimate`` against ``measured``: MAPE, the shares within ±5 and ±10 %, and the bias
    (mean log ratio, in %)."""
    ratio = np.asarray(estimate, dtype=float) / np.asarray(measured, dtype=float)
    relative = np.abs(ratio - 1)
    return {"n": int(len(relative)), "mape_pct": float(100 * np.mean(relative)),
            "within_5pct": float(np.mean(relative <= 0.05)), "within_10pct": float(np.mean(relative <= 0.10)),
            "bias_pct": float(100 * np.mean(np.log(ratio)))}


def noise_corrected_error(estimate: np.ndarray, measured: np.ndarray, first: np.ndarray, second: np.ndarray,
                          resamples: int = 1000, seed: int = 0) -> dict:
    """The LUT's own error, with the measurement's noise taken out.

    ``e = log(estimate / measured)`` over every child mixes the table's error with one measurement's noise;
    ``d = log(second / first)`` over the children timed twice carries two measurements' noise, so one
    measurement's variance is ``mean(d²) / 2``. The table's RMS error is ``sqrt(mean(e²) − mean(d²) / 2)`` (0 when
    the noise explains all of it); its 95 % interval comes from resampling the children and the pairs. In per cent
    of the measured latency (log ratios: 0.01 ≈ 1 %). ``corrected_spread_pct`` takes the mean of ``e`` (the bias) out
    too, ``sqrt(var(e) − mean(d²) / 2)``: a whole run timed at another speed than the table shifts every child alike,
    which re-anchoring removes and the table's shape does not cause.
    """
    e = np.log(np.asarray(estimate, dtype=float) / np.asarray(measured, dtype=float))
    d = np.log(np.asarray(second, dtype=float) / np.asarray(first, dtype=float))

    def corrected(e_squared: float, d_squared: float) -> float:
        return 100 * float(np.sqrt(max(e_squared - d_squared / 2, 0.0)))

    rng = np.random.default_rng(seed)
    e2, d2 = e**2, d**2
    resampled = [corrected(rng.choice(e2, len(e2)).mean(), rng.choice(d2, len(d2)).mean()) for _ in range(resamples)]
    return {
        "pairs": int(len(d)),
        "noise_pct": 100 * float(np.sqrt(np.mean(d2) / 2)),
        "lut_rms_pct": 100 * float(np.sqrt(np.mean(e2))),
        "lut_bias_pct": 100 * float(np.mean(e)),
        "corrected_rms_pct": corrected(np.mean(e2), np.mean(d2)),
        "corrected_rms_interval_pct": [float(v) for v in np.percentile(resampled, [2.5, 97.5])],
        "corrected_spread_pct": corrected(np.var(e), np.mean(d2)),
    }


def repeat_report(estimate: np.ndarray, measured: np.ndarray, pairs: pd.DataFrame) -> dict | None:
    """The repeat's agreement with itself beside the LUT's on the same children, and the LUT's noise-corrected
    error; ``pairs`` has each twice-timed child's ``estimate_ms``, ``first_ms`` and ``second_ms``. None below three
    pairs."""
    if len(pairs) < 3:
        return None
    across = (pairs["process_first"] != pairs["process_second"]) if "process_first" in pairs else np.zeros(len(pairs))
    return {
        "pairs_across_processes": int(across.sum()),  # second measurement in another process than the first
        "repeat": errors(pairs["second_ms"], pairs["first_ms"]),
        "lut_same_children": errors(pairs["estimate_ms"], pairs["first_ms"]),
        **noise_corrected_error(estimate, measured, pairs["first_ms"], pairs["second_ms"]),
    }


def module_counts(archs: np.ndarray) -> np.ndarray:
    return np.asarray(archs, dtype=bool).reshape(len(archs), -1).sum(axis=1)


def by_module_count(archs: np.ndarray, estimate: np.ndarray, measured: np.ndarray, second: np.ndarray | None = None,
                    parts: int = 5) -> list[dict]:
    """Agreement per module-count fifth (by quantile; fewer parts where counts tie), sparsest first: where the
    calibration fits the space's ends worse than its middle (a bias) or where the timing is noisier (a spread the
    repeat shares). ``second``: each child's second measurement, NaN where it has none."""
    counts = module_counts(archs)
    if len(counts) < parts:
        return []
    bins = pd.qcut(counts, parts, labels=False, duplicates="drop")
    estimate, measured = np.asarray(estimate, dtype=float), np.asarray(measured, dtype=float)
    second = np.full(len(counts), np.nan) if second is None else np.asarray(second, dtype=float)
    rows = []
    for part in np.unique(bins):
        inside = bins == part
        row = {"modules": f"{counts[inside].min()}–{counts[inside].max()}",
               **errors(estimate[inside], measured[inside])}
        repeated = inside & ~np.isnan(second)
        if repeated.sum() >= 3:
            row["repeat"] = errors(second[repeated], measured[repeated])
        rows.append(row)
    return rows


def module_count_trend(archs: np.ndarray, estimate: np.ndarray, measured: np.ndarray) -> dict | None:
    """How the table's error moves with the module count: the least-squares line of ``log(estimate / measured)``
    on the count, given as its change (in %, 95 % interval) from the 10th to the 90th percentile of the counts —
    the middles of the sparsest and the densest fifth.

    A calibration fits the costs of modules and cells, so a fresh one leaves no such line; a table calibrated while
    the machine ran in another state does: dense exported networks gain or lose more from a change of state than
    the reference network that pairing divides by (``docs/results/validation-noise/stale-table/``). None below three
    distinct counts."""
    counts = module_counts(archs)
    if len(np.unique(counts)) < 3:
        return None
    error = 100 * np.log(np.asarray(estimate, dtype=float) / np.asarray(measured, dtype=float))
    fit = stats.linregress(counts, error)
    sparse, dense = np.percentile(counts, [10, 90])
    margin = stats.t.ppf(0.975, len(counts) - 2) * fit.stderr
    return {"from_modules": float(sparse), "to_modules": float(dense),
            "change_pct": float(fit.slope * (dense - sparse)),
            "change_interval_pct": [float((fit.slope - margin) * (dense - sparse)),
                                    float((fit.slope + margin) * (dense - sparse))]}


def stale_calibration(trend: dict | None, mode: str = "calibrated", limit_pct: float = STALE_CHANGE_PCT) -> bool:
    """Whether a run's estimates in ``mode`` came from a calibration that no longer fits the machine's state: the
    error's change across module counts surely beyond ``limit_pct`` (its interval outside ±limit). A plain sum
    tilts anyway (what calibration is for), so only ``calibrated`` estimates are called stale."""
    if not trend or mode != "calibrated":
        return False
    low, high = trend["change_interval_pct"]
    return low > limit_pct or high < -limit_pct


def agreement(estimate: np.ndarray, measured: np.ndarray) -> dict:
    """How well estimates match measurements: correlations, errors, shares within ±5/±10 %, and the linear fit."""
    estimate, measured = np.asarray(estimate, dtype=float), np.asarray(measured, dtype=float)
    fit = stats.linregress(estimate, measured)
    ratio = measured / estimate
    relative = errors(estimate, measured)
    return {
        "n": int(len(measured)),
        "pearson": float(stats.pearsonr(estimate, measured).statistic),
        "spearman": float(stats.spearmanr(estimate, measured).statistic),
        "kendall": float(stats.kendalltau(estimate, measured).statistic),
        "rmse_ms": float(np.sqrt(np.mean((estimate - measured) ** 2))),
        "mape_pct": relative["mape_pct"],
        "within_5pct": relative["within_5pct"],
        "within_10pct": relative["within_10pct"],
        "slope": float(fit.slope),
        "intercept": float(fit.intercept),
        "measured_over_estimate_p5_p50_p95": [float(v) for v in np.percentile(ratio, [5, 50, 95])],
    }


def at_table_speed(estimate: np.ndarray, results: pd.DataFrame, centre_ms: float) -> dict:
    """The agreement of the children timed while the machine ran at the speed the table was profiled at (the
    reference near ``centre_ms``: :attr:`lut.table.LatencyTable.children_reference_ms`).

    This shared machine switches between speed states, and the ratio of a network to the reference moves with the
    state by a few percent (``docs/results/reference-state/``): a validation run mostly in another state than its
    table's misses by that much. ``n`` says how many children qualify; the figures need three.
    """
    near = at_speed(results["reference_ms"].to_numpy(), centre_ms)
    summary = {"n": int(near.sum()), "share": float(near.mean())}
    return summary | agreement(estimate[near], results["measured_ms"].to_numpy()[near]) if near.sum() >= 3 else summary


def first_passes(frame: pd.DataFrame) -> pd.DataFrame:
    """Each child's first measurement, in index order (every row of runs made before repeats existed)."""
    chosen = frame[frame["repeat"] == 0] if "repeat" in frame else frame
    return chosen.sort_values("index")


def repeated_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """Each twice-timed child's estimate and its first and second measurement."""
    if "repeat" not in frame:
        return pd.DataFrame({column: pd.Series(dtype=int if column == "index" else float)
                             for column in ("index", "estimate_ms", "first_ms", "second_ms")})
    process = ["process"] if "process" in frame else []  # runs made before processes were recorded: none
    first = frame[frame["repeat"] == 0][["index", "estimate_ms", "measured_ms", *process]]
    second = frame[frame["repeat"] == 1][["index", "measured_ms", *process]]
    pairs = first.merge(second, on="index", suffixes=("_first", "_second"))
    return pairs.rename(columns={"measured_ms_first": "first_ms", "measured_ms_second": "second_ms"})

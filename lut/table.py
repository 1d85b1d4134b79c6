"""One latency lookup table: its schema, its content hash, and the estimate it gives.

A table is built from profiling records (one measurement of one entry in one round). Each record holds the entry's
ratio to the reference network timed beside it; the table's ``reference.anchor_ms`` is the median reference latency
over the whole profile, and an entry's ``median_ms`` is its median ratio over rounds times that anchor: the latency
at the machine's typical speed during profiling. The raw median is kept as ``raw_median_ms``. The estimate of an
architecture is the sum of what it executes::

    stem + head + Σ selected modules + Σ over cells selecting k ≥ 2 modules of sum_k(cell)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from instanas.errors import ArchitectureError, LUTError
from instanas.space import (
    ARCH_SHAPE,
    CONTROLLER_KEY,
    LEGACY_CONTROLLER,
    MODULE_NAMES,
    NUM_CELLS,
    NUM_MODULES,
    REQUIRED_CELLS,
    controller_signature,
    entry_keys,
    kind_repeats,
    search_space,
)
from profiler.reference import reference_description

SCHEMA_VERSION = 1
KIND = "instanas-latency-lut"
ENTRY_COLUMNS = [
    "key", "kind", "cell", "module", "merged", "median_ms", "iqr_ms", "raw_median_ms", "runs", "round_medians_ms",
]
_META_KEYS = ("schema_version", "kind", "version", "resolution", "created", "fingerprint", "settings", "reference")
_OPTIONAL_META_KEYS = ("calibration", "derived_from")
MODES = ("plain", "calibrated")


def content_hash(payload: dict) -> str:
    """SHA-256 of the canonical JSON of everything but the hash itself."""
    body = {key: value for key, value in payload.items() if key != "content_hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def summarise_records(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Reduce per-round records to one row per entry, in milliseconds at the profile's typical speed."""
    anchor = float(frame["reference_ms"].median())
    rows = []
    for key, group in frame.sort_values("round").groupby("key", sort=True):
        first = group.iloc[0]
        rows.append(
            {
                "key": key,
                "kind": first["kind"],
                "cell": None if pd.isna(first["cell"]) else int(first["cell"]),
                "module": first["module"] if isinstance(first["module"], str) else None,
                "merged": None if pd.isna(first["merged"]) else int(first["merged"]),
                "median_ms": float(group["ratio"].median()) * anchor,
                "iqr_ms": float(group["ratio_iqr"].median()) * anchor,
                "raw_median_ms": float(group["median_ms"].median()),
                "runs": int(group["runs"].sum()),
                "round_medians_ms": [float(value) * anchor for value in group["ratio"]],
            }
        )
    reference = reference_description() | {
        "anchor_ms": anchor,
        "spread_ms": [float(value) for value in np.percentile(frame["reference_ms"], [5, 95])],
    }
    return pd.DataFrame(rows, columns=ENTRY_COLUMNS), reference


class LatencyTable:
    """A LUT in memory: metadata plus a pandas frame of entries, with the matrices the estimate needs."""

    def __init__(self, meta: dict, entries: pd.DataFrame, path: Path | None = None):
        self.meta = meta
        self.entries = entries.reset_index(drop=True)
        self.path = path
        by_key = self.entries.set_index("key")["median_ms"]
        missing = set(entry_keys()) - set(by_key.index)
        if missing:
            raise LUTError(f"{self._name()}: {len(missing)} entries missing, e.g. {sorted(missing)[0]}")
        self.module_ms = np.zeros(ARCH_SHAPE)
        self.merge_ms = np.zeros((NUM_CELLS, NUM_MODULES + 1))  # column k: the sum of k outputs; 0 for k < 2
        for row in self.entries.itertuples():
            if row.kind == "module":
                self.module_ms[int(row.cell), MODULE_NAMES.index(row.module)] = row.median_ms
            elif row.kind == "merge":
                self.merge_ms[int(row.cell), int(row.merged)] = row.median_ms
        self.fixed_ms = float(by_key["stem"] + by_key["head"])

    # -- identity -----------------------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.meta["resolution"]

    @property
    def version(self) -> int | None:
        return self.meta.get("version")

    @property
    def fingerprint_id(self) -> str:
        return self.meta["fingerprint"]["id"]

    @property
    def threads(self) -> int:
        return self.meta["settings"]["threads"]

    @property
    def backend(self) -> str:
        """The runtime its entries were timed in (:mod:`profiler.backends`); tables from before backends: eager."""
        return self.meta["fingerprint"]["fields"].get("backend", "eager")

    def _name(self) -> str:
        return str(self.path) if self.path else f"LUT res{self.meta.get('resolution')}"

    @property
    def content_hash(self) -> str:
        return self.to_dict()["content_hash"]

    @property
    def anchor_ms(self) -> float:
        """The reference network's median latency while profiling: converts ratios to milliseconds."""
        return self.meta["reference"]["anchor_ms"]

    def check_reference(self) -> None:
        """Refuse to convert new paired measurements with this table's anchor if it was timed against another
        network."""
        recorded = self.meta["reference"]
        recorded = {"arch": recorded.get("arch"), "resolution": recorded.get("resolution", self.resolution)}
        if recorded != reference_description():
            raise LUTError(
                f"{self._name()}: profiled against another reference network ({recorded['arch']} at "
                f"{recorded['resolution']} px); profile again with this version of instanas"
            )

    @property
    def controller_ms(self) -> float:
        """The controller's latency (it runs once per image, before the chosen child)."""
        found = self.entries.loc[self.entries["key"] == CONTROLLER_KEY]
        if found.empty:
            raise LUTError(f"{self._name()}: has no controller entry (profiled by an older instanas); profile again")
        timed = found["module"].iloc[0]
        timed = timed if isinstance(timed, str) else LEGACY_CONTROLLER  # made before the entry named its controller
        if timed != controller_signature(self.resolution):
            raise LUTError(f"{self._name()}: timed another controller ({timed}; this instanas has "
                           f"{controller_signature(self.resolution)}); profile again")
        return float(found["median_ms"].iloc[0])

    @property
    def cell_merge(self) -> str:
        """How the profiled cells merge their modules' outputs (tables made before the setting existed: ``sum``)."""
        return self.meta["settings"].get("cell_merge", "sum")

    def check_merge(self, merge: str) -> None:
        """Refuse to price networks whose cells merge their modules otherwise than the profiled ones."""
        if merge != self.cell_merge:
            raise LUTError(
                f"{self._name()}: profiled with cells that {self.cell_merge} their modules, the networks here "
                f"{merge} them; profile with --cell-merge {merge}"
            )

    @property
    def calibration(self) -> dict | None:
        return self.meta.get("calibration")

    @property
    def speed_exponent(self) -> float:
        """How much of the reference's change of speed a network does not share (0 for a table without one)."""
        return float((self.calibration or {}).get("speed_exponent", 0.0))

    @property
    def children_reference_ms(self) -> float:
        """The reference's latency beside whole children at the table's speed, where the speed gate centres: the
        calibration children's median, else the anchor (beside its entries). Beside 224 px children the reference
        ran 10–25 % slower than beside the entries on the Intel machine (``docs/results/xeon/``), so a gate centred on
        the anchor set aside children timed at the table's speed."""
        return float((self.calibration or {}).get("reference_ms", self.anchor_ms))

    def measured_ms(self, ratio, reference_ms):
        """A paired measurement (``ratio`` to the reference, which ran at ``reference_ms``) in ms at the table's
        speed: ``ratio · anchor · (reference_ms / anchor) ** speed_exponent`` (see :func:`fit_speed_exponent`)."""
        return to_table_speed(np.asarray(ratio) * self.anchor_ms, reference_ms, self.anchor_ms, self.speed_exponent)

    @property
    def default_mode(self) -> str:
        return "calibrated" if self.calibration else "plain"

    # -- estimate -----------------------------------------------------------------------------------------------
    def estimate(self, archs: np.ndarray, mode: str = "plain") -> np.ndarray | float:
        """Estimated latency in ms of one ``(17, 5)`` architecture or a batch ``(N, 17, 5)``, in one numpy pass.

        ``plain`` is the paper's sum of entries; ``calibrated`` corrects it with the table's fitted calibration
        (:func:`fit_calibration`).
        """
        if mode not in MODES:
            raise LUTError(f"unknown estimate mode {mode!r} (choose {' or '.join(MODES)})")
        if mode == "calibrated" and not self.calibration:
            raise LUTError(f"{self._name()}: has no calibration; run `instanas calibrate` to add one")
        archs = np.asarray(archs, dtype=bool)
        single = archs.ndim == 2
        batch = archs[None] if single else archs
        if mode == "plain":  # one matrix product: the hot path of training and of `correlate`
            counts = _module_counts(batch)
            total = self.fixed_ms + batch.reshape(len(batch), -1) @ self.module_ms.reshape(-1) + self._merges_ms(counts)
        else:
            total = self.calibrated(*self.parts(batch), archs=batch)
        return float(total[0]) if single else total

    def parts(self, archs: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
        """What a batch of architectures executes, from the entries: stem + head (ms), each cell's modules (ms,
        ``(N, 17)``), the merges (ms, ``(N,)``) and the number of modules executed (``(N,)``)."""
        counts = _module_counts(archs)
        cells_ms = (archs * self.module_ms).sum(axis=2)
        return self.fixed_ms, cells_ms, self._merges_ms(counts), counts.sum(axis=1)

    def _merges_ms(self, counts: np.ndarray) -> np.ndarray:
        return self.merge_ms[np.arange(NUM_CELLS), counts].sum(axis=1)

    def calibrated(self, fixed_ms, cells_ms: np.ndarray, merges_ms: np.ndarray, modules: np.ndarray,
                   mode: str = "calibrated", archs: np.ndarray | None = None) -> np.ndarray:
        """The estimate from a network's parts (:meth:`parts`; a network outside the space times its own and gives
        no ``archs``: the ``entries`` model's corrections of the space's own entries then do not apply)."""
        plain = fixed_ms + cells_ms.sum(axis=1) + merges_ms
        if mode == "plain":
            return plain
        fit = self.calibration
        if fit.get("model", "linear") == "linear":
            return fit["scale"] * plain + fit["per_module_ms"] * modules + fit["per_network_ms"]
        terms = calibration_terms(self.resolution, cells_ms, merges_ms, modules, fit["model"])
        total = fixed_ms + terms @ fit["coefficients"]
        if "kind_repeat_ms" in fit and archs is not None:
            total = total + kind_repeats(archs) @ np.asarray(fit["kind_repeat_ms"])
        if fit["model"] == "entries" and archs is not None:
            total = total + _entry_terms(archs, self.module_ms) @ np.asarray(fit["entry_corrections"])
        return total

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        entries = self.entries.astype(object).where(self.entries.notna(), None).to_dict(orient="records")
        payload = {key: self.meta[key] for key in (*_META_KEYS, *_OPTIONAL_META_KEYS) if key in self.meta}
        payload["entries"] = entries
        payload["content_hash"] = content_hash(payload)
        return payload

    @classmethod
    def from_dict(cls, payload: object, path: Path | None = None) -> LatencyTable:
        """Validate schema and hash; every failure names the file."""
        name = str(path) if path else "LUT"
        if not isinstance(payload, dict) or payload.get("kind") != KIND:
            raise LUTError(f"{name}: not an instanas latency table")
        if payload.get("schema_version") != SCHEMA_VERSION:
            raise LUTError(
                f"{name}: schema version {payload.get('schema_version')!r} is not supported (expected {SCHEMA_VERSION})"
            )
        missing = [key for key in (*_META_KEYS, "entries", "content_hash") if key not in payload]
        if missing:
            raise LUTError(f"{name}: missing field {missing[0]!r}")
        if payload["content_hash"] != content_hash(payload):
            raise LUTError(f"{name}: content hash does not match (the file was modified or corrupted)")
        try:
            entries = pd.DataFrame(payload["entries"], columns=ENTRY_COLUMNS)
            if entries["median_ms"].isna().any() or (entries["median_ms"].astype(float) < 0).any():
                raise ValueError("negative or missing latency")
        except (TypeError, ValueError) as error:
            raise LUTError(f"{name}: malformed entries ({error})") from None
        meta = {key: payload[key] for key in (*_META_KEYS, *_OPTIONAL_META_KEYS) if key in payload}
        return cls(meta, entries, path)


def _module_counts(archs: np.ndarray) -> np.ndarray:
    """Modules selected per cell, ``(N, 17)``, of a batch of valid architectures (else one error naming the first)."""
    if archs.shape[1:] != ARCH_SHAPE:
        raise ArchitectureError(f"architectures must have shape (N, 17, 5), got {archs.shape}")
    counts = archs.sum(axis=2)
    invalid = REQUIRED_CELLS & (counts == 0)
    if invalid.any():
        index, cell = np.argwhere(invalid)[0]
        raise ArchitectureError(f"architecture {index}: cell {cell} needs at least one module")
    return counts


CALIBRATION_MODELS = ("entries", "cells", "stages", "linear")
CALIBRATION_WEIGHTINGS = ("absolute", "relative")
ENTRY_RIDGE = 1e-4  # per child fitted, on corrections measured as shares of a network's latency


def check_calibration_model(model: str, weighting: str = "absolute") -> None:
    if model not in CALIBRATION_MODELS:
        raise LUTError(f"unknown calibration model {model!r} (choose {' or '.join(CALIBRATION_MODELS)})")
    if weighting not in CALIBRATION_WEIGHTINGS:
        raise LUTError(f"unknown calibration weighting {weighting!r} (choose {' or '.join(CALIBRATION_WEIGHTINGS)})")


def calibration_terms(resolution: int, cells_ms: np.ndarray, merges_ms: np.ndarray, modules: np.ndarray,
                      model: str = "cells") -> np.ndarray:
    """The terms of the ``cells`` or ``stages`` model: the modules' entries summed per feature-map size, the merges,
    the number of modules executed, (``cells`` only) the number of cells executed, and 1; see :func:`fit_calibration`.
    A cell executes when it runs a module, so when its entries sum to more than zero."""
    cell_sizes = np.array([cell.input_hw for cell in search_space(resolution).cells])
    per_size = [cells_ms[:, cell_sizes == size].sum(axis=1) for size in _feature_map_sizes(resolution)]
    executed_cells = [(cells_ms > 0).sum(axis=1)] if model != "stages" else []
    return np.column_stack([*per_size, merges_ms, modules, *executed_cells, np.ones(len(modules))])


def calibration_term_names(resolution: int, model: str = "cells") -> list[str]:
    sizes = _feature_map_sizes(resolution)
    executed_cells = ["ms per cell executed"] if model != "stages" else []
    return [*(f"scale of modules at {size}x{size}" for size in sizes), "scale of merges", "ms per module",
            *executed_cells, "ms per network"]


def _entry_terms(archs: np.ndarray, module_ms: np.ndarray) -> np.ndarray:
    """The ``entries`` model's terms: each (cell, module) entry a network executes, and each cell it executes."""
    archs = np.asarray(archs, dtype=bool)
    return np.hstack([(archs * module_ms).reshape(len(archs), -1), archs.any(axis=2)])


def _feature_map_sizes(resolution: int) -> list[int]:
    """The cells' input feature-map sizes at ``resolution``, largest first."""
    return sorted({cell.input_hw for cell in search_space(resolution).cells}, reverse=True)


def to_table_speed(paired_ms, reference_ms, anchor_ms: float, exponent: float):
    """Paired milliseconds (ratio × anchor) brought to the anchor's speed: × (reference / anchor) ** exponent."""
    return np.asarray(paired_ms, dtype=float) * (np.asarray(reference_ms, dtype=float) / anchor_ms) ** exponent


def fit_speed_exponent(table: LatencyTable, parts: tuple, paired_ms: np.ndarray, reference_ms: np.ndarray) -> float:
    """The exponent κ of :meth:`LatencyTable.measured_ms`, fitted on children measured as ``ratio · anchor`` whose
    :meth:`LatencyTable.parts` are ``parts``.

    Pairing divides a network's time by the reference's timed beside it, as if both slowed alike when the machine
    does. They do not: a network slows by part of the reference's change (``docs/results/speed-exponent/``), so its
    ratio falls when the reference runs slow. κ is minus the slope of log(measured / the ``cells`` fit) against
    log(reference / anchor), kept within [0, 1]: 0 trusts the pairing fully, 1 takes the raw time (ratio × the
    reference's own time); a fit on few children or a machine of one speed can say more than the data holds.
    """
    fixed_ms, cells_ms, merges_ms, modules = parts
    design = calibration_terms(table.resolution, cells_ms, merges_ms, modules, "cells")
    coefficients, *_ = np.linalg.lstsq(design, paired_ms - fixed_ms, rcond=None)
    residual = np.log(paired_ms / (fixed_ms + design @ coefficients))
    speed = np.log(np.asarray(reference_ms, dtype=float) / table.anchor_ms)
    if np.ptp(speed) == 0:
        return 0.0
    return float(np.clip(-np.polyfit(speed, residual, 1)[0], 0.0, 1.0))


def fit_calibration(table: LatencyTable, archs: np.ndarray, measured_ms: np.ndarray, model: str = "entries",
                    reference_ms: np.ndarray | None = None, weighting: str = "absolute",
                    repeats: bool = True) -> dict:
    """Least-squares correction of what isolated entry timing misses, fitted on measured children.

    ``cells`` (default): ``stem + head + Σ_size a_size · modules at that size + b · merges + c · modules
    + e · cells executed + d``. Inside a network a module's cost differs from its isolated timing by a factor that
    depends on its feature-map size (caches, call overhead relative to work), plus a cost per module executed, per
    cell that runs any module (the cell's own call and shortcut), and per network.
    ``entries`` (the default): ``cells``, then a correction of each entry and of each cell's own cost inside a
    network (a few per cent: what the network around a module changes), fitted on the relative residuals with a
    ridge penalty towards none. It needs more children than the terms it fits (about 1,000; see
    ``docs/results/calibration_models.md``); a network outside the space gets the ``cells`` part.
    ``stages``: the same without the per-cell cost (at 32 px its misses gather in the smallest networks).
    ``linear``: ``scale · plain + per_module_ms · modules + per_network_ms`` (one global scale).
    With the reference's latency beside each measurement (``reference_ms``), the measurements (``ratio · anchor``)
    are first brought to the table's speed with a fitted :func:`fit_speed_exponent`, stored as ``speed_exponent``.
    ``repeats`` (``cells``, ``stages``, ``entries``): also a cost per module that runs right after one of its own
    kind, per kind (:func:`instanas.space.kind_repeats`), stored as ``kind_repeat_ms``: a network of one kind in
    every cell runs faster than its entries and the random children's fit say (``basic``: 8 % at 32 px).
    It needs children that repeat kinds (`calibrate --few-kinds`).
    ``weighting``: ``absolute`` (default) fits milliseconds, so the rich networks' residuals, ten times larger, weigh
    most; ``relative`` fits relative errors, every child alike. On six committed validations they score the same,
    the sparsest fifth included: its misses are spread, not bias (``docs/results/calibration-weighting/``).
    """
    check_calibration_model(model, weighting)
    fixed_ms, cells_ms, merges_ms, modules = table.parts(np.asarray(archs, dtype=bool))
    measured_ms = np.asarray(measured_ms, dtype=float)
    speed = {}
    if reference_ms is not None:
        exponent = fit_speed_exponent(table, (fixed_ms, cells_ms, merges_ms, modules), measured_ms, reference_ms)
        measured_ms = to_table_speed(measured_ms, reference_ms, table.anchor_ms, exponent)
        speed = {"speed_exponent": exponent}
    weight = 1 / measured_ms if weighting == "relative" else np.ones_like(measured_ms)
    speed |= {"weighting": weighting}
    if model == "linear":
        plain = table.calibrated(fixed_ms, cells_ms, merges_ms, modules, mode="plain")
        design = np.column_stack([plain, modules, np.ones(len(plain))])
        (scale, per_module, per_network), *_ = np.linalg.lstsq(design * weight[:, None], measured_ms * weight,
                                                               rcond=None)
        return {"model": model, "scale": float(scale), "per_module_ms": float(per_module),
                "per_network_ms": float(per_network), "children": int(len(measured_ms))} | speed
    design = calibration_terms(table.resolution, cells_ms, merges_ms, modules, model)
    names = calibration_term_names(table.resolution, model)
    if repeats:
        design = np.hstack([design, kind_repeats(archs)])
    coefficients, *_ = np.linalg.lstsq(design * weight[:, None], (measured_ms - fixed_ms) * weight, rcond=None)
    fit = {"model": model, "terms": names, "coefficients": [float(value) for value in coefficients[:len(names)]],
           "children": int(len(measured_ms))} | speed
    if repeats:
        fit["kind_repeat_ms"] = [float(value) for value in coefficients[len(names):]]
    if model == "entries":
        estimate_ms = fixed_ms + design @ coefficients
        shares = _entry_terms(archs, table.module_ms) / estimate_ms[:, None]
        penalty = ENTRY_RIDGE * len(measured_ms) * np.eye(shares.shape[1])
        corrections = np.linalg.solve(shares.T @ shares + penalty, shares.T @ (measured_ms / estimate_ms - 1))
        fit |= {"entry_corrections": [float(value) for value in corrections], "ridge": ENTRY_RIDGE}
    return fit

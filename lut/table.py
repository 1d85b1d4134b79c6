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
    MODULE_NAMES,
    NUM_CELLS,
    NUM_MODULES,
    REQUIRED_CELLS,
    entry_keys,
)

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
    from profiler.reference import reference_description  # here, not at the top: it imports torch (≈2 s)

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
        """Refuse to convert new paired measurements with this table's anchor if it was timed against another network."""
        from profiler.reference import reference_description  # here, not at the top: it imports torch (≈2 s)

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
        found = self.entries.loc[self.entries["key"] == CONTROLLER_KEY, "median_ms"]
        if found.empty:
            raise LUTError(f"{self._name()}: has no controller entry (profiled by an older instanas); profile again")
        return float(found.iloc[0])

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
    def default_mode(self) -> str:
        return "calibrated" if self.calibration else "plain"

    # -- estimate -----------------------------------------------------------------------------------------------
    def estimate(self, archs: np.ndarray, mode: str = "plain") -> np.ndarray | float:
        """Estimated latency in ms of one ``(17, 5)`` architecture or a batch ``(N, 17, 5)``, in one numpy pass.

        ``plain`` is the paper's sum of entries; ``calibrated`` corrects it with the table's fitted calibration
        (``scale · plain + per_module_ms · modules executed + per_network_ms``).
        """
        if mode not in MODES:
            raise LUTError(f"unknown estimate mode {mode!r} (choose {' or '.join(MODES)})")
        if mode == "calibrated" and not self.calibration:
            raise LUTError(f"{self._name()}: has no calibration; run `instanas calibrate` to add one")
        archs = np.asarray(archs, dtype=bool)
        single = archs.ndim == 2
        batch = archs[None] if single else archs
        if batch.shape[1:] != ARCH_SHAPE:
            raise ArchitectureError(f"architectures must have shape (N, 17, 5), got {archs.shape}")
        counts = batch.sum(axis=2)
        invalid = REQUIRED_CELLS & (counts == 0)
        if invalid.any():
            index, cell = np.argwhere(invalid)[0]
            raise ArchitectureError(f"architecture {index}: cell {cell} needs at least one module")
        modules = batch.reshape(len(batch), -1) @ self.module_ms.reshape(-1)
        merges = self.merge_ms[np.arange(NUM_CELLS), counts].sum(axis=1)
        total = self.fixed_ms + modules + merges
        if mode == "calibrated":
            fit = self.calibration
            total = fit["scale"] * total + fit["per_module_ms"] * counts.sum(axis=1) + fit["per_network_ms"]
        return float(total[0]) if single else total

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


def fit_calibration(plain_ms: np.ndarray, modules_executed: np.ndarray, measured_ms: np.ndarray) -> dict:
    """Least-squares ``measured ≈ scale · plain + per_module_ms · modules + per_network_ms``.

    What isolated module timing misses: per-module cost inside a network (call overhead, weights and activations not
    in cache) and a fixed per-network cost; ``scale`` absorbs a uniform speed difference.
    """
    design = np.column_stack([plain_ms, modules_executed, np.ones(len(plain_ms))])
    (scale, per_module, per_network), *_ = np.linalg.lstsq(design, measured_ms, rcond=None)
    return {
        "scale": float(scale),
        "per_module_ms": float(per_module),
        "per_network_ms": float(per_network),
        "children": int(len(measured_ms)),
    }


def compare_tables(before: LatencyTable, after: LatencyTable) -> pd.DataFrame:
    """Per-entry relative change from ``before`` to ``after``, largest absolute change first."""
    joined = before.entries.set_index("key")[["median_ms"]].join(
        after.entries.set_index("key")[["median_ms"]], lsuffix="_before", rsuffix="_after", how="inner"
    )
    joined["change_pct"] = 100 * (joined["median_ms_after"] / joined["median_ms_before"] - 1)
    order = joined["change_pct"].abs().sort_values(ascending=False).index
    return joined.loc[order].reset_index()

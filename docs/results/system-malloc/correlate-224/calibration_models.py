"""Can another linear model of the entries fit the measured children? Fit on the calibration children, test on the edges.

Usage (repository root): python docs/results/system-malloc/correlate-224/calibration_models.py R LUT CALIBRATION_RESULTS EDGES_RESULTS
"""
import sys

import numpy as np
import pandas as pd

from instanas.space import parse_architecture, search_space
from lut.agreement import agreement
from lut.store import load_table

res, lutp, calib, edges = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
t = load_table(lutp)
sizes = np.array([c.input_hw for c in search_space(res).cells])
kinds = {'e6': [0, 2], 'e3': [1, 3], 'basic': [4]}
def data(path):
    f = pd.read_csv(path)
    return f, np.stack([parse_architecture(a) for a in f.arch])
def design(A, model):
    fixed, cells, merges, mods = t.parts(A)
    per = (A * t.module_ms)  # N,17,5
    cols = []
    if model == 'stages':
        cols = [cells[:, sizes == s].sum(1) for s in sorted(set(sizes), reverse=True)]
    elif model == 'kinds':
        cols = [per[:, :, idx].sum((1, 2)) for idx in kinds.values()]
    elif model == 'stage-kinds':
        cols = [per[:, sizes == s][:, :, idx].sum((1, 2))
                for s in sorted(set(sizes), reverse=True) for idx in kinds.values()]
    return fixed, np.column_stack(cols + [merges, mods, np.ones(len(mods))])
fc, Ac = data(calib)
fe, Ae = data(edges)
for model in ('stages', 'kinds', 'stage-kinds'):
    fixed, X = design(Ac, model)
    coef, *_ = np.linalg.lstsq(X, fc.measured_ms - fixed, rcond=None)
    fixed, Xe = design(Ae, model)
    pe = fixed + Xe @ coef
    err = 100 * (pe / fe.measured_ms - 1)
    fixed, Xc = design(Ac, model)
    a = agreement(fixed + Xc @ coef, fc.measured_ms)
    print(f"{model:12s} in-sample MAPE {a['mape_pct']:.2f} 5% {a['within_5pct']:.3f} | edges max |err| {np.abs(err).max():.1f}  {np.round(err, 1).tolist()}")

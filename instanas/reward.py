"""The controller's reward (paper §3.3, eq. 2) with the dynamic latency bounds, priced by the LUT.

R = R_T · R_A when the prediction is right (R_T = +10), R = R_T = −10 when it is wrong. R_A = −(z − U_t)(z − L_t)/γ,
γ = ((U_t − L_t)/2)², clamped at 0 outside [L_t, U_t], is 1 in the middle of the interval: the controller is drawn to
architectures whose LUT latency z sits inside the bounds, and the upper bound falls over the search epochs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from instanas.errors import LUTError
from instanas.space import full_architecture, mobilenetv2_architecture, smallest_architecture


@dataclass(frozen=True)
class LatencyBounds:
    """L (fixed) and U_t, falling linearly from ``upper_start`` at epoch 0 to ``upper_end`` at the last epoch."""

    lower: float
    upper_start: float
    upper_end: float
    epochs: int

    @classmethod
    def from_table(cls, table, epochs: int, *, start_fraction: float = 0.7, end_fraction: float = 0.5) -> LatencyBounds:
        """L = the smallest architecture; U_0 = ``start_fraction`` × all 85 modules; U_end = ``end_fraction`` ×
        the MobileNetV2-like architecture (the authors' search script)."""
        mode = table.default_mode
        bounds = cls(
            lower=float(table.estimate(smallest_architecture(), mode=mode)),
            upper_start=start_fraction * float(table.estimate(full_architecture(), mode=mode)),
            upper_end=end_fraction * float(table.estimate(mobilenetv2_architecture(), mode=mode)),
            epochs=epochs,
        )
        if min(bounds.upper_start, bounds.upper_end) <= bounds.lower:
            raise LUTError(
                f"latency bounds are empty: upper {bounds.upper_end:.2f}–{bounds.upper_start:.2f} ms is not above the "
                f"smallest architecture's {bounds.lower:.2f} ms; choose larger bound fractions"
            )
        return bounds

    def upper(self, epoch: int) -> float:
        progress = min(epoch / max(self.epochs - 1, 1), 1.0)
        return self.upper_start + (self.upper_end - self.upper_start) * progress

    def as_dict(self) -> dict:
        return asdict(self)


def latency_reward(latency_ms: Tensor, upper: float, lower: float) -> Tensor:
    """R_A in [0, 1]: 1 at the middle of [lower, upper], 0 at and beyond the bounds."""
    gamma = ((upper - lower) / 2) ** 2
    return (-(latency_ms - upper) * (latency_ms - lower) / gamma).clamp(min=0)


def instance_reward(correct: Tensor, latency_ms: Tensor, upper: float, lower: float, *, positive: float = 10.0,
                    negative: float = -10.0) -> Tensor:
    """Eq. 2 per image: ``positive`` × R_A when correct, ``negative`` when wrong."""
    return torch.where(correct, positive * latency_reward(latency_ms, upper, lower), torch.full_like(latency_ms, negative))


def lut_latency(table, selections: Tensor, mode: str) -> Tensor:
    """LUT latency in ms of a batch of selections ``(B, 17, 5)``, as a float tensor on the selections' device."""
    estimate = table.estimate(selections.detach().cpu().numpy().astype(bool), mode=mode)
    return torch.as_tensor(np.asarray(estimate), dtype=torch.float32, device=selections.device)

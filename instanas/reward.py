"""The controller's reward (paper §3.3, eq. 2) with the dynamic latency bounds, priced by the LUT.

R = R_T · R_A when the prediction is right (R_T = +10), R = R_T = −10 when it is wrong. Two latency rewards R_A:

* ``paper`` — as published: R_A = −(z − U_t)(z − L)/γ, γ = ((U_t − L)/2)², clamped at 0 outside [L, U_t], with z the
  LUT latency of the child the controller drew. Once the drawn children are slower than U_t a right answer earns 0
  whatever its latency, and with the encouragement α the drawn children cannot get below about 1 − α of the full
  meta-graph's modules, so late in the search no child is inside the bounds and the latency term is silent.
* ``graded`` (the default) — the same interval and the same quadratic inside it, with three changes. The latency
  that is priced is the greedy policy's — the network the search deploys — plus the drawn child's deviation from the
  mean latency of the children the policy draws (:func:`mean_drawn_latency`): the deviation carries the policy
  gradient, the greedy latency says where the policy stands, so the bounds are always within reach. (The paper prices
  the drawn child itself; with the encouragement α a drawn child keeps each module the greedy policy drops with
  probability 1 − α, so drawn children cannot get below about 1 − α of the full meta-graph while the greedy policy
  already can, and the two drift apart as the probabilities move.) Outside the interval R_A keeps falling, leaving
  the quadratic along its tangent and levelling off towards −1 (R_A = e^(−2(|u| − 1)) − 1), so there is a gradient
  towards the interval at every latency while a right answer never earns less than a wrong one (R ≥ −10, the
  paper's principle that accuracy comes first). And the interval's half-width never falls below the spread of the
  drawn children's latency, so the per-sample noise does not swamp the curve.
* ``falling`` — priced as ``graded``, but R_A falls with latency over the whole range, from 1 at L to 0 at U_t
  (1 − u², u = (z − L)/(U_t − L); beyond U_t as ``graded``): BlockDrop's form, where a right answer is always paid
  more for a cheaper network. Both quadratics above pay most at one latency for every image, so an easy image is not
  paid to run cheaper than a hard one and only the accuracy term can tell them apart; here an image that stays right
  on fewer modules keeps earning for dropping them, and one that turns wrong loses R_T (docs/training.md, issue 33).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from instanas.controller import deterministic_policy, encouraged
from instanas.errors import ConfigError, LUTError
from instanas.space import (
    ARCH_SHAPE,
    full_architecture,
    mobilenetv2_architecture,
    smallest_architecture,
    with_default_modules,
)
from instanas.training.config import check_reward


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


def mean_drawn_latency(table, explore: Tensor, samples: int = 16) -> Tensor:
    """Per image, the mean LUT latency of ``samples`` children drawn from the probabilities ``explore`` ``(B, 17, 5)``
    (required cells repaired as the controller repairs them): what the policy draws, on average."""
    drawn = torch.bernoulli(explore.detach().unsqueeze(1).expand(-1, samples, *ARCH_SHAPE))
    latency = lut_latency(table, with_default_modules(drawn.flatten(0, 1)), table.default_mode)
    return latency.view(len(explore), samples).mean(1)


def drawn_spread(table, alpha: float, *, samples: int = 4096, seed: int = 0) -> float:
    """The standard deviation of a drawn child's LUT latency for a decided policy (p ∈ {0, 1}): the larger of the
    smallest and the full architecture's, whose drawn children keep each module with probability 1 − α or α."""
    if not 0.5 < alpha <= 1:
        raise ConfigError(f"encouragement α = {alpha} must lie in (0.5, 1] for drawn children to follow the policy")
    rng, spreads = np.random.default_rng(seed), []
    for greedy in (smallest_architecture(), full_architecture()):
        drawn = with_default_modules(rng.random((samples, *ARCH_SHAPE)) < np.where(greedy, alpha, 1 - alpha))
        spreads.append(float(table.estimate(drawn, mode=table.default_mode).std()))
    return max(spreads)


def latency_reward(latency_ms: Tensor, upper: float, lower: float) -> Tensor:
    """The paper's R_A in [0, 1]: 1 at the middle of [lower, upper], 0 at and beyond the bounds."""
    gamma = ((upper - lower) / 2) ** 2
    return (-(latency_ms - upper) * (latency_ms - lower) / gamma).clamp(min=0)


def graded_latency_reward(latency_ms: Tensor, centre: float, half_width: float) -> Tensor:
    """1 − u² inside the interval (u = (z − centre)/half_width, the paper's quadratic), e^(−2(|u| − 1)) − 1 outside:
    R_A and its slope are continuous, it falls strictly with the distance from the centre, and it stays above −1."""
    u = ((latency_ms - centre) / half_width).abs()
    return torch.where(u <= 1, 1 - u**2, torch.expm1(-2 * (u - 1)))


def falling_latency_reward(latency_ms: Tensor, lower: float, width: float) -> Tensor:
    """1 at ``lower`` (and below), 1 − u² up to ``lower + width`` (u = (z − lower)/width), then the graded tail:
    strictly falling with latency above ``lower``, continuous with its slope, above −1."""
    return graded_latency_reward(latency_ms.clamp(min=lower), lower, width)


@dataclass(frozen=True)
class LatencyReward:
    """R_A at search epoch ``epoch`` of the greedy child, or of a drawn one (see the module's docstring)."""

    kind: str
    bounds: LatencyBounds
    spread_ms: float = 0.0  # graded and falling: the floor of the interval's half-width

    @classmethod
    def build(cls, kind: str, table, bounds: LatencyBounds, alpha: float) -> LatencyReward:
        check_reward(kind)
        return cls(kind, bounds, drawn_spread(table, alpha) if kind != "paper" else 0.0)

    def greedy(self, latency_ms: Tensor, epoch: int) -> Tensor:
        upper, lower = self.bounds.upper(epoch), self.bounds.lower
        if self.kind == "paper":
            return latency_reward(latency_ms, upper, lower)
        if self.kind == "falling":
            return falling_latency_reward(latency_ms, lower, max(upper - lower, 2 * self.spread_ms))
        return graded_latency_reward(latency_ms, (upper + lower) / 2, max((upper - lower) / 2, self.spread_ms))

    def drawn(self, latency_ms: Tensor, epoch: int, greedy_ms: Tensor, mean_drawn_ms: Tensor) -> Tensor:
        """``latency_ms`` of the drawn children, ``greedy_ms`` of the same images' greedy children, and the mean
        latency of what their policies draw (``graded`` and ``falling`` use the last two)."""
        if self.kind == "paper":
            return self.greedy(latency_ms, epoch)
        return self.greedy(greedy_ms + latency_ms - mean_drawn_ms, epoch)

    def pricer(self, table, probabilities: Tensor, epoch: int, alpha: float) -> Callable[[Tensor, bool], tuple]:
        """For one batch of policies ``probabilities``: ``price(selection, drawn) -> (R_A, LUT latency)`` of the
        drawn (``drawn``) or greedy children ``selection`` (required cells already repaired), as
        :func:`instanas.training.loop.self_critical_loss` asks for them."""
        greedy_ms = lut_latency(table, deterministic_policy(probabilities.detach()), table.default_mode)
        mean_drawn_ms = mean_drawn_latency(table, encouraged(probabilities.detach(), alpha))

        def price(selection: Tensor, drawn: bool) -> tuple[Tensor, Tensor]:
            latency = lut_latency(table, selection, table.default_mode)
            values = self.drawn(latency, epoch, greedy_ms, mean_drawn_ms) if drawn else self.greedy(latency, epoch)
            return values, latency

        return price

    def as_dict(self) -> dict:
        return {"kind": self.kind, "bounds": self.bounds.as_dict(), "spread_ms": self.spread_ms}


def instance_reward(right: Tensor, latency_reward_values: Tensor, *, positive: float = 10.0,
                    negative: float = -10.0) -> Tensor:
    """Eq. 2 per image: ``positive`` × R_A when ``right``, ``negative`` when not.

    ``right`` is either whether the child's prediction was correct (bool, the paper) or the child's probability of the
    right class (float, ``--reward-accuracy confidence``): then R is eq. 2's expectation with the prediction drawn from
    the child's softmax, p·R_T·R_A + (1 − p)·(−10). A correct-or-wrong reward tells the controller about an image only
    when a drawn child flips its prediction; the probability moves with every module the child keeps, so an image
    whose answer is uncertain is paid for the modules that make it surer, and one that is sure whatever it runs is not.
    """
    if right.dtype == torch.bool:
        return torch.where(right, positive * latency_reward_values, torch.full_like(latency_reward_values, negative))
    return right * positive * latency_reward_values + (1 - right) * negative


def lut_latency(table, selections: Tensor, mode: str) -> Tensor:
    """LUT latency in ms of a batch of selections ``(B, 17, 5)``, as a float tensor on the selections' device."""
    estimate = table.estimate(selections.detach().cpu().numpy().astype(bool), mode=mode)
    return torch.as_tensor(np.asarray(estimate), dtype=torch.float32, device=selections.device)

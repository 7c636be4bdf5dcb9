"""Output effect of a paired concept: how the model's output moves from each pair's member
without the concept to the member with it (Goyal et al. 2019, "CaCE"; docs/method.md §6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attnxai.models.base import ModelAdapter
from attnxai.stats import mean_interval, min_effect_p_values, paired_p_values


@dataclass
class PairOutputs:
    """Logits of both members of every pair."""

    with_logits: torch.Tensor  # [n, C]
    without_logits: torch.Tensor  # [n, C]

    @property
    def delta_logit(self) -> torch.Tensor:
        """[n, C] ``f(x_with) - f(x_without)`` per class, on logits."""
        return self.with_logits - self.without_logits

    @property
    def delta_prob(self) -> torch.Tensor:
        """[n, C] the same on class probabilities."""
        return self.with_logits.softmax(-1) - self.without_logits.softmax(-1)


def pair_outputs(adapter: ModelAdapter, with_items: Sequence[Any], without_items: Sequence[Any],
                 batch_size: int | None = None) -> PairOutputs:
    """Plain forward passes over both members of every pair (any list of pairs)."""
    if len(with_items) != len(without_items) or not with_items:
        raise ValueError("pairs need the same, non-zero number of members on each side")
    return PairOutputs(adapter.logits(list(with_items), batch_size),
                       adapter.logits(list(without_items), batch_size))


@dataclass
class PairedSummary:
    """Per column of paired differences: mean, 95% interval, and the
    p-values of the minimum-effect test (``p_value``: |E| > δ; with δ = 0 the two-sided test of
    E = 0) and of the equivalence test (``p_negligible``: |E| < δ)."""

    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    p_negligible: np.ndarray
    n: int


def summarise_pairs(deltas: np.ndarray | torch.Tensor, test: str = "sign_flip", seed: int = 0,
                    level: float = 0.95, min_effect: np.ndarray | float = 0.0) -> PairedSummary:
    """Summary of paired differences ``deltas`` [n, ...] over their first axis, tested against
    the minimum relevant effect ``min_effect`` (per column, or one for all)."""
    d = np.asarray(deltas, dtype=float)
    mean, lo, hi = mean_interval(d, level)
    p, p_negligible = min_effect_p_values(d, min_effect,
                                          lambda x: paired_p_values(x, test, seed))
    return PairedSummary(mean, lo, hi, p, p_negligible, d.shape[0])

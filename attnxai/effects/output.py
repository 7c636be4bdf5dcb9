"""Output effect of a paired concept: how the model's output moves from each pair's member
without the concept to the member with it (Goyal et al. 2019, "CaCE"; docs/method.md §6)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attnxai.models.base import ModelAdapter
from attnxai.stats import mean_interval, paired_p_values


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


@torch.no_grad()
def batched_logits(adapter: ModelAdapter, items: Sequence[Any], batch_size: int | None = None
                   ) -> torch.Tensor:
    """Logits [N, C] on the CPU from plain forward passes, batch by batch."""
    bs = batch_size or adapter.batch_size
    return torch.cat([adapter.forward_logits(adapter.prepare(list(items[s:s + bs]))).float().cpu()
                      for s in range(0, len(items), bs)])


def pair_outputs(adapter: ModelAdapter, with_items: Sequence[Any], without_items: Sequence[Any],
                 batch_size: int | None = None) -> PairOutputs:
    """Plain forward passes over both members of every pair (any list of pairs)."""
    if len(with_items) != len(without_items) or not with_items:
        raise ValueError("pairs need the same, non-zero number of members on each side")
    return PairOutputs(batched_logits(adapter, with_items, batch_size),
                       batched_logits(adapter, without_items, batch_size))


@dataclass
class PairedSummary:
    """Mean, 95% interval and two-sided p-value of paired differences, per column."""

    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_value: np.ndarray
    n: int


def summarise_pairs(deltas: np.ndarray | torch.Tensor, test: str = "sign_flip", seed: int = 0,
                    level: float = 0.95) -> PairedSummary:
    """Summary of paired differences ``deltas`` [n, ...] over their first axis."""
    d = np.asarray(deltas, dtype=float)
    mean, lo, hi = mean_interval(d, level)
    return PairedSummary(mean, lo, hi, paired_p_values(d, test, seed), d.shape[0])

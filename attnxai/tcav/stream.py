"""Streaming scores: the target inputs pass in batches, and only sufficient statistics stay.

Per weighting x layer x CAV, the TCAV scores need four sums over the inputs: the count of
S(x) > 0 (the sign score), the sums of max(S, 0) and |S| (the magnitude score) and the sum of
D(x) (the mean derivative). Per input, a run keeps the mean, std and share of positive S(x)
over each concept's CAVs, and S(x) of every concept CAV only when asked (``per_cav``). So
memory grows with the inputs only by what is stored per input, never by the CAVs x inputs
matrix. :class:`ScoreStats` of disjoint batches (or of shards scored on other machines) add up
with :meth:`ScoreStats.reduce`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attnxai.models.base import ModelAdapter
from attnxai.tcav.scores import EPS, capture_scores

#: Per-input statistics over a concept's CAVs, in this order along the last axis.
PER_INPUT = ("score_mean", "score_std", "positive_fraction")


@dataclass
class ScoreStats:
    """Sufficient statistics of S(x) and D(x) of ``n`` consecutive inputs from ``start``.

    Sums are float64 ``[W, L, K]`` (weighting x layer x CAV). The per-input values come in
    chunks of consecutive inputs (joined once, by :meth:`input_values`), so adding a batch
    copies nothing: ``per_input`` chunks are ``[W, L, C, b, 3]`` (concept x input:
    :data:`PER_INPUT`); ``per_cav`` chunks ``[W, L, Kc, b]``, S(x) of the concept CAVs (in the
    order of the groups, flattened), or empty unless asked for.
    """

    start: int
    n: int
    positive: torch.Tensor
    positive_sum: torch.Tensor
    abs_sum: torch.Tensor
    derivative_sum: torch.Tensor
    per_input: list[torch.Tensor]
    per_cav: list[torch.Tensor]

    @classmethod
    def of_batch(cls, S: torch.Tensor, D: torch.Tensor, groups: torch.Tensor, start: int,
                 per_cav: bool) -> ScoreStats:
        """Statistics of one batch: S, D ``[W, L, K, B]``; ``groups`` ``[C, R]`` the CAV indices
        of each concept (every concept has R CAVs)."""
        S64, D64 = S.double(), D.double()
        own = S64[:, :, groups]  # [W, L, C, R, B]
        per_input = torch.stack([own.mean(3), own.std(3, unbiased=True),
                                 (own > 0).double().mean(3)], dim=-1)  # [W, L, C, B, 3]
        return cls(start=start, n=S.shape[-1], positive=(S64 > 0).double().sum(-1),
                   positive_sum=S64.clamp(min=0).sum(-1), abs_sum=S64.abs().sum(-1),
                   derivative_sum=D64.sum(-1), per_input=[per_input],
                   per_cav=[S[:, :, groups.reshape(-1)].clone()] if per_cav else [])

    @classmethod
    def reduce(cls, parts: Sequence[ScoreStats]) -> ScoreStats:
        """The statistics of the union of disjoint, contiguous parts (in any order)."""
        parts = sorted(parts, key=lambda p: p.start)
        for a, b in zip(parts, parts[1:]):
            if a.start + a.n != b.start:
                raise ValueError(f"parts do not tile the inputs: {a.start}+{a.n} != {b.start}")

        def total(name: str) -> torch.Tensor:
            return torch.stack([getattr(p, name) for p in parts]).sum(0)

        return cls(start=parts[0].start, n=sum(p.n for p in parts), positive=total("positive"),
                   positive_sum=total("positive_sum"), abs_sum=total("abs_sum"),
                   derivative_sum=total("derivative_sum"),
                   per_input=[c for p in parts for c in p.per_input],
                   per_cav=[c for p in parts for c in p.per_cav])

    def input_values(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-input statistics ``[W, L, C, n, 3]`` and the concept CAVs' S(x)
        ``[W, L, Kc, n]`` (None unless kept), each joined into one tensor."""
        per_cav = torch.cat(self.per_cav, dim=-1) if self.per_cav else None
        return torch.cat(self.per_input, dim=3), per_cav

    def tcav(self) -> torch.Tensor:
        """Sign-count TCAV ``[W, L, K]``: the share of inputs with S(x) > 0."""
        return self.positive / self.n

    def magnitude(self) -> torch.Tensor:
        """Magnitude TCAV ``[W, L, K]``: Σ max(S, 0) / Σ |S| (0.5 when every S(x) is 0)."""
        return torch.where(self.abs_sum > 0, self.positive_sum / self.abs_sum.clamp(min=EPS),
                           torch.full_like(self.abs_sum, 0.5))

    def derivative(self) -> torch.Tensor:
        """Mean D(x) ``[W, L, K]``."""
        return self.derivative_sum / self.n



def concept_groups(kinds: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    """``[C, R]``: the indices of each concept's CAVs among a layer's CAVs, concepts in order
    of appearance (every concept trains the same number of CAVs)."""
    order: dict[str, list[int]] = {}
    for k, (kind, name) in enumerate(zip(kinds, names)):
        if kind == "concept":
            order.setdefault(name, []).append(k)
    return torch.tensor(list(order.values()), dtype=torch.long)


def scoring_attention(adapter: ModelAdapter, pooling: str) -> str:
    """The attention a scoring capture asks for: the adapter's own readout row is all the
    attention weighting needs (a long input then never materialises T x T attention); another
    pooling needs the full matrices."""
    return "readout" if pooling == adapter.pooling else "full"


def batch_stats(cap: Any, start: int, directions: torch.Tensor, layers: list[int], pooling: str,
                weightings: Sequence[str], groups: torch.Tensor, per_cav: bool) -> ScoreStats:
    """:class:`ScoreStats` of one capture (with gradients) of the inputs from ``start``."""
    scored = [capture_scores(cap, directions, layers, pooling, w) for w in weightings]
    S = torch.stack([s for s, _ in scored])  # [W, L, K, B]
    D = torch.stack([d for _, d in scored])
    return ScoreStats.of_batch(S, D, groups, start, per_cav)


def stream_stats(adapter: ModelAdapter, inputs: Sequence[Any], target_idx: int,
                 directions: torch.Tensor, layers: list[int], pooling: str,
                 weightings: Sequence[str], groups: torch.Tensor, per_cav: bool,
                 batch_size: int | None, start: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> tuple[ScoreStats, float]:
    """Score ``inputs`` batch by batch (one forward+backward each) and reduce the batches'
    statistics as they come. Returns them and the seconds spent scoring (not capturing)."""
    total: ScoreStats | None = None
    offset, scoring_s = start, 0.0
    for cap in adapter.capture_batches(list(inputs), target=target_idx, grads=True,
                                       batch_size=batch_size, progress=progress,
                                       attention=scoring_attention(adapter, pooling)):
        t0 = time.perf_counter()
        part = batch_stats(cap, offset, directions, layers, pooling, weightings, groups, per_cav)
        offset += part.n
        # Fold the sums in at once, so only the per-input values grow with the inputs.
        total = part if total is None else ScoreStats.reduce([total, part])
        scoring_s += time.perf_counter() - t0
        del cap  # before the next batch is captured, not after
    if total is None:
        raise ValueError("no inputs to score")
    return total, scoring_s

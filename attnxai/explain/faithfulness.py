"""Faithfulness of attributions: ERASER-style comprehensiveness, sufficiency and F1@20 (docs/method.md §5).

For an attribution over the n players of an input and K = {0, 10, 20, 50} (% of players):

- comprehensiveness ``Σ_{k∈K} [p_y(x) − p_y(x ∖ top_k)] / (|K|+1)``: remove the top-k% players;
- sufficiency ``Σ_{k∈K} [p_y(x) − p_y(top_k only)] / (|K|+1)``: keep only the top-k% players;
- F1@20: macro F1 against the gold labels of the predictions made with only the top 20% kept.

y is the class predicted on the full input. Top-k% means the ``ceil(k·n/100)`` players with the
largest values (ties: earlier token first), so any k > 0 removes at least one player. Removal
is :class:`attnxai.explain.baselines.PlayerMasker`'s: [MASK] for word pieces (special tokens stay),
the fill colour for patches. All masked copies of a batch go through batched forward passes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from attnxai.explain.baselines import METHODS, PlayerMasker, explain, get_method, mean_fill
from attnxai.errors import UserInputError
from attnxai.models.base import ModelAdapter

KS = (0, 10, 20, 50)
F1_K = 20

ProbsFn = Callable[[torch.Tensor], torch.Tensor]  # keep [B, R, n] -> probabilities [B, R, C]


def top_k_mask(values: torch.Tensor, player_mask: torch.Tensor, k: float) -> torch.Tensor:
    """[B, n] bool: the ceil(k·n_b/100) highest-valued players of each input (n_b its players)."""
    n = player_mask.sum(1)
    # k·n/100 computed exactly in integers where k is whole, so 20% of 10 is 2, not 2.0000001.
    count = torch.tensor([math.ceil(k * int(nb) / 100 - 1e-9) for nb in n], dtype=torch.long)
    ranked = values.double().masked_fill(~player_mask, -math.inf)
    order = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1]).expand_as(order))
    return (rank < count[:, None]) & player_mask


@dataclass
class Faithfulness:
    """Per-input faithfulness of one attribution; ``predictions_at_f1k`` are the classes
    predicted with only the top F1_K% of players kept."""

    comprehensiveness: torch.Tensor  # [B]
    sufficiency: torch.Tensor  # [B]
    full_probability: torch.Tensor  # [B] p_y(x)
    predicted: torch.Tensor  # [B] y, predicted on the full input
    predictions_at_f1k: torch.Tensor  # [B]


def faithfulness(values: torch.Tensor, player_mask: torch.Tensor, probs_fn: ProbsFn,
                 ks: Sequence[float] = KS, f1_k: float = F1_K) -> Faithfulness:
    """Comprehensiveness and sufficiency of attributions ``values`` [B, n] (docs/method.md §5).

    ``probs_fn(keep)`` returns the class probabilities [B, R, C] of each input with only the
    players ``keep[b, r]`` present; all 2|K| + 2 variants of every input go in one call.
    """
    B, n = values.shape
    pm = player_mask.bool()
    tops = [top_k_mask(values, pm, k) for k in ks]
    keep = torch.stack([pm] + [pm & ~t for t in tops] + tops + [top_k_mask(values, pm, f1_k)], 1)
    probs = probs_fn(keep).double()  # [B, 2|K|+2, C]
    y = probs[:, 0].argmax(-1)
    p = probs.gather(2, y[:, None, None].expand(B, keep.shape[1], 1))[..., 0]  # [B, R]
    K = len(ks)
    full = p[:, 0]
    comp = (full[:, None] - p[:, 1:1 + K]).sum(1) / (K + 1)
    suff = (full[:, None] - p[:, 1 + K:1 + 2 * K]).sum(1) / (K + 1)
    return Faithfulness(comprehensiveness=comp, sufficiency=suff, full_probability=full,
                        predicted=y, predictions_at_f1k=probs[:, -1].argmax(-1))


def macro_f1(gold: Sequence[int], predicted: Sequence[int]) -> float:
    """Macro F1 over the classes that occur in gold or predicted labels."""
    from sklearn.metrics import f1_score

    return float(f1_score(list(gold), list(predicted), average="macro", zero_division=0))


@dataclass
class MethodScore:
    """One row of an evaluation: a method's faithfulness over a dataset, mean and spread."""

    method: str
    n_inputs: int
    comprehensiveness: float
    comprehensiveness_std: float
    sufficiency: float
    sufficiency_std: float
    f1_at_20: float | None  # None without gold labels matching the model's classes
    f1_full: float | None  # F1 of the full-input predictions, for reference
    seconds_per_input: float  # the attribution only, not the faithfulness passes

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def gold_indices(adapter: ModelAdapter, labels: Sequence[str] | None) -> list[int] | None:
    """Gold labels as the model's class indices, or None when they are not its classes."""
    if labels is None or any(str(l) not in adapter.labels for l in labels):
        return None
    return [adapter.labels.index(str(l)) for l in labels]


def evaluate_methods(adapter: ModelAdapter, inputs: Sequence[Any],
                     labels: Sequence[str] | None = None,
                     methods: Sequence[str] | None = None,
                     options: dict[str, dict[str, Any]] | None = None,
                     batch_size: int | None = None,
                     progress: Callable[[str, int, int], None] | None = None) -> list[MethodScore]:
    """Faithfulness of each method over a dataset, batch by batch.

    ``options`` maps a method name to its options (e.g. ``{"attention-shapley": {"game":
    "mutual"}}``). Vision: removed patches take the mean colour of all ``inputs``. F1 needs
    ``labels`` that are the model's class names; otherwise it is None.
    """
    inputs = list(inputs)
    if not inputs:
        raise UserInputError("No inputs to evaluate.")
    if labels is not None and len(labels) != len(inputs):
        raise ValueError(f"Got {len(labels)} labels for {len(inputs)} inputs.")
    names = list(methods) if methods else list(METHODS)
    for name in names:
        get_method(name)
    options = options or {}
    bs = batch_size or adapter.batch_size
    fill = mean_fill(adapter, inputs, bs) if adapter.modality == "image" else None
    per: dict[str, list[Faithfulness]] = {m: [] for m in names}
    seconds = dict.fromkeys(names, 0.0)
    for start in range(0, len(inputs), bs):
        chunk = inputs[start:start + bs]
        masker = PlayerMasker(adapter, adapter.prepare(chunk), fill)
        for name in names:
            opts = dict(options.get(name, {}))
            if fill is not None and "fill" in get_method(name).options:
                opts.setdefault("fill", fill)
            t0 = time.perf_counter()
            attr = explain(adapter, chunk, name, **opts)
            seconds[name] += time.perf_counter() - t0
            per[name].append(faithfulness(attr.values, attr.player_mask, masker.probs_grid))
            if progress is not None:
                progress(name, start + len(chunk), len(inputs))
    gold = gold_indices(adapter, labels)
    rows = []
    for name in names:
        comp = torch.cat([f.comprehensiveness for f in per[name]])
        suff = torch.cat([f.sufficiency for f in per[name]])
        pred_k = torch.cat([f.predictions_at_f1k for f in per[name]]).tolist()
        pred = torch.cat([f.predicted for f in per[name]]).tolist()
        rows.append(MethodScore(
            method=name, n_inputs=len(inputs),
            comprehensiveness=float(comp.mean()), comprehensiveness_std=_std(comp),
            sufficiency=float(suff.mean()), sufficiency_std=_std(suff),
            f1_at_20=None if gold is None else macro_f1(gold, pred_k),
            f1_full=None if gold is None else macro_f1(gold, pred),
            seconds_per_input=seconds[name] / len(inputs)))
    return rows


def _std(x: torch.Tensor) -> float:
    return float(x.std(unbiased=True)) if x.numel() > 1 else 0.0


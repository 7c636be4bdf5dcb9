"""Attention-weighted token-level TCAV: directional derivatives, per-input scores, TCAV scores.

For an input x of the target class k, at layer l, with CAV v:

    s_t  = grad_{h_t} y_k . v                      (all layers x all CAVs: one contraction)
    a_t  = mean over heads of A[q, t]              (q = the row the head reads: [CLS], the
                                                    mean over query rows, or the last token)
    s'_t = a_t * s_t * |a| / (|s| + eps)           (norms over the input's tokens)
    S(x) = mean of s'_t over the input's players   (valid tokens: no specials, no padding)

``plain`` weighting uses a_t = 1. The rescaling is positive, so it never changes the sign of
S(x); it puts the per-token map on the attention's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from attnxai.models.base import ModelAdapter
from attnxai.models.capture import Capture
from attnxai.models.readouts import readout_rows

WEIGHTINGS = ("attention", "plain")
EPS = 1e-12


def token_weights(attention: torch.Tensor, token_mask: torch.Tensor, pooling: str,
                  valid_mask: torch.Tensor | None = None, rows: bool = False) -> torch.Tensor:
    """a_t for one layer: [B, H, T, T] attention -> [B, T], zero on padding: the mean over
    heads of the attention of the query row(s) the head reads (``pooling``, a readout of
    :mod:`attnxai.models.readouts`; ``valid_mask`` marks the patch tokens of the readouts that
    read them). ``rows``: ``attention`` is already that row, [B, H, 1, T] (a capture with
    ``attention_rows``)."""
    A = attention.mean(1)  # [B, T, T] (or [B, 1, T]), mean over heads
    row = A[:, 0] if rows else readout_rows(A, token_mask, pooling, valid_mask)
    return row * token_mask.to(A.dtype)


def directional_derivatives(grad_activations: torch.Tensor, cavs: torch.Tensor) -> torch.Tensor:
    """s_t for every layer, CAV, input and token in one contraction.

    grad_activations: [L, B, T, d]; cavs: [L, K, d] -> [L, K, B, T].
    """
    return torch.einsum("lbtd,lkd->lkbt", grad_activations, cavs)


def weighted_token_scores(s: torch.Tensor, a: torch.Tensor | None, token_mask: torch.Tensor,
                          eps: float = EPS) -> torch.Tensor:
    """s'_t = a_t s_t |a| / (|s| + eps), padding masked; s: [..., B, T], a broadcastable or None."""
    m = token_mask.to(s.dtype)
    a = m if a is None else a * m
    s = s * m
    norm_a = a.norm(dim=-1)  # [B]
    norm_s = s.norm(dim=-1)  # [..., B]
    return a * s * (norm_a / (norm_s + eps))[..., None]


def input_scores(s: torch.Tensor, a: torch.Tensor | None, token_mask: torch.Tensor) -> torch.Tensor:
    """S(x): the mean of s'_t over each input's real tokens; [..., B, T] -> [..., B]."""
    weighted = weighted_token_scores(s, a, token_mask)
    return weighted.sum(-1) / token_mask.sum(-1).clamp(min=1).to(s.dtype)


def tcav_sign(S: torch.Tensor) -> torch.Tensor:
    """Sign-count TCAV: the share of inputs with S(x) > 0; [..., B] -> [...]."""
    return (S > 0).to(S.dtype).mean(-1)


def tcav_magnitude(S: torch.Tensor) -> torch.Tensor:
    """Magnitude TCAV: sum of positive S(x) over sum of |S(x)| (0.5 when all are zero)."""
    total = S.abs().sum(-1)
    pos = S.clamp(min=0).sum(-1)
    return torch.where(total > 0, pos / total.clamp(min=EPS), torch.full_like(total, 0.5))


def weighted_derivative(s: torch.Tensor, a: torch.Tensor | None, token_mask: torch.Tensor
                        ) -> torch.Tensor:
    """D(x): the mean of a_t s_t over real tokens, without the rescaling; [..., B, T] -> [..., B].

    S(x) divides by |s|, which makes it scale-free (a cosine between a and s) and loses how
    strongly the logit responds to the CAV; D(x) keeps it, so it can be compared between a
    concept's CAVs and random CAVs (all unit vectors of one layer). sign(D) = sign(S).
    """
    m = token_mask.to(s.dtype)
    a = m if a is None else a * m
    return (a * s).sum(-1) / m.sum(-1).clamp(min=1)


def capture_scores(cap: Capture, cavs: torch.Tensor, layers: list[int], pooling: str,
                   weighting: str) -> tuple[torch.Tensor, torch.Tensor]:
    """S(x) and D(x) for every chosen layer, CAV and input: cavs [L, K, d] -> two [L, K, B]."""
    if cap.grad_activations is None:
        raise ValueError("TCAV needs a capture with gradients (grads=True).")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    scores, derivatives = [], []
    # A layer at a time: the token-level derivatives [K, B, T] of all layers at once would
    # hold K x B x T x L values (194 MB for ViT-B/16's 640 CAVs and 32 images).
    for j, l in enumerate(layers):
        grads = cap.grad_activations[l][None]
        s = directional_derivatives(grads, cavs[j:j + 1].to(grads.dtype))  # [1, K, B, T]
        a = None if weighting == "plain" else token_weights(  # [B, T], shared by the K CAVs
            cap.attentions[l], cap.token_mask, pooling, cap.valid_mask, cap.attention_rows)
        # Players only, like the CAVs' training rows: a [CLS]-read model's last block passes
        # no gradient to its patch tokens, and a score resting on the [CLS] token alone would
        # apply the CAV to a token it was never trained on (docs/method.md §7).
        scores.append(input_scores(s, a, cap.valid_mask)[0])
        derivatives.append(weighted_derivative(s, a, cap.valid_mask)[0])
    return torch.stack(scores), torch.stack(derivatives)


@dataclass
class ConceptHeatmap:
    """Per-token concept sensitivity s'_t of one input at one layer (mean over the CAVs)."""

    values: torch.Tensor  # [T] over the input's real tokens (specials included, padding dropped)
    valid: torch.Tensor  # [T] which of them are players (word pieces / patches)
    tokens: list[str] | None  # text
    grid: torch.Tensor | None  # vision: [rows, cols] patch values


def concept_heatmap(adapter: ModelAdapter, x: Any, cavs: torch.Tensor, layer: int,
                    target: int | str | None = None, weighting: str = "attention",
                    pooling: str | None = None) -> ConceptHeatmap:
    """s'_t for one input (text or image) at `layer`, averaged over a concept's CAVs [R, d]."""
    cap = adapter.capture([x], target=target)
    s = directional_derivatives(cap.grad_activations[layer][None], cavs[None].float())[0]  # [R,1,T]
    a = None
    if weighting == "attention":
        a = token_weights(cap.attentions[layer], cap.token_mask, pooling or adapter.pooling,
                          cap.valid_mask)
    elif weighting != "plain":
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    per_token = weighted_token_scores(s, a, cap.valid_mask).mean(0)[0]  # [T], 0 off the players
    real = cap.token_mask[0]
    values, valid = per_token[real], cap.valid_mask[0][real]
    grid = None
    if cap.grid is not None:
        grid = values[valid].reshape(cap.grid)
    tokens = [t for t, r in zip(cap.tokens[0], real) if r] if cap.tokens is not None else None
    return ConceptHeatmap(values=values, valid=valid, tokens=tokens, grid=grid)

"""Attention-Shapley: exact Shapley values of attention games (docs/method.md §1).

Players are the valid tokens of an input (word pieces without [CLS]/[SEP]/padding, or the
patches of an image). An aggregated attention matrix ``M`` over the players defines a game;
its Shapley values have an exact O(n²) closed form, so no enumeration or sampling is needed
for any input length. :func:`enumerate_shapley` (exact, 2^n coalitions) and
:func:`sample_shapley` (permutation sampling) serve user-defined games and the tests that
prove the closed form.

Value functions for the generic estimators are *vectorised*: ``value_fn(coalitions)`` takes a
bool tensor ``[K, n]`` (row k = membership of coalition k) and returns ``[K]`` values, so a
model-backed game can evaluate many coalitions in one batched forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from attnxai.errors import UserInputError
from attnxai.models.capture import Capture
from attnxai.models.readouts import readout_rows

GAMES = ("cls", "mutual", "max_mutual")
SOURCES = ("attention", "grad_attention")
MAX_ENUMERATE = 16

ValueFn = Callable[[torch.Tensor], torch.Tensor]


# -- players -----------------------------------------------------------------------------------
def player_positions(valid_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Token positions of the players of each input, left-aligned and padded.

    Returns ``positions`` [B, n] (token index, -1 where padding) and ``player_mask`` [B, n],
    n = the largest number of players in the batch. Players keep their token order.
    """
    valid = valid_mask.bool()
    B, T = valid.shape
    counts = valid.sum(1)
    n = int(counts.max()) if B else 0
    # A stable sort of "not valid" brings the valid positions first, in token order.
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices[:, :n]
    player_mask = torch.arange(n)[None, :] < counts[:, None]
    positions = order.masked_fill(~player_mask, -1)
    return positions, player_mask


def _players_matrix(full: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, T, T] -> [B, n, n] between the players; padding rows and columns are zero."""
    B, n = positions.shape
    T = full.shape[-1]
    safe = positions.clamp(min=0)
    rows = full.gather(1, safe[:, :, None].expand(B, n, T))
    out = rows.gather(2, safe[:, None, :].expand(B, n, n))
    keep = (positions >= 0).to(full.dtype)
    return out * keep[:, :, None] * keep[:, None, :]


def _players_vector(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[B, T] -> [B, n] at the players; padding is zero."""
    return x.gather(1, positions.clamp(min=0)) * (positions >= 0).to(x.dtype)


# -- aggregation -------------------------------------------------------------------------------
@dataclass
class AttentionGame:
    """An aggregated attention matrix over the players of each input of a batch.

    ``matrix`` [B, n, n] holds M between players (rows = queries); ``cls_row`` [B, n] the
    aggregated attention from the [CLS] query (token 0) to each player; ``player_mask`` [B, n]
    marks real players, ``positions`` [B, n] their token index in the capture (-1: padding).
    """

    matrix: torch.Tensor
    cls_row: torch.Tensor
    player_mask: torch.Tensor
    positions: torch.Tensor
    source: str
    layers: list[int]
    heads: list[int]

    def shapley(self, game: str = "max_mutual") -> torch.Tensor:
        """Exact Shapley values [B, n] of this game (zero at padding players)."""
        return attention_shapley(self.matrix, game, player_mask=self.player_mask,
                                 cls_row=self.cls_row)


def select_indices(values: Sequence[int] | None, count: int, what: str) -> list[int]:
    """Indices into range(count) (negative counts from the end); all of them when None."""
    if values is None or len(values) == 0:
        return list(range(count))
    out = []
    for v in values:
        if not -count <= int(v) < count:
            raise UserInputError(f"{what} {v} does not exist: this model has {count} "
                                 f"{what}s (0..{count - 1}).")
        out.append(int(v) % count)
    return sorted(set(out))


def aggregate_attention(capture: Capture, source: str = "attention",
                        layers: Sequence[int] | None = None,
                        heads: Sequence[int] | None = None, readout: str = "cls"
                        ) -> AttentionGame:
    """Build M from a capture: mean over the selected heads and layers, restricted to players.

    ``source="attention"``: mean of the attention probabilities A. ``"grad_attention"``
    (Grad-SAM style): mean of ``A ⊙ ReLU(∂y_k/∂A)``, k = the capture's target class; the
    capture must have been taken with ``grads=True``. The `cls` game's row is the row the
    model's head reads (``readout``, :mod:`attnxai.models.readouts`): token 0 for [CLS]-read
    models, the last real token for decoder-only classifiers, the mean row for mean-pooled
    ones (docs/method.md §1 and §8).
    """
    if source not in SOURCES:
        raise UserInputError(f"Unknown attention source {source!r}; use one of: {', '.join(SOURCES)}.")
    if source == "grad_attention" and capture.grad_attentions is None:
        raise ValueError("The grad_attention source needs a capture taken with grads=True.")
    L = capture.num_layers
    H = capture.attentions[0].shape[1]
    layer_idx = select_indices(layers, L, "layer")
    head_idx = select_indices(heads, H, "head")
    # All heads: a slice, so no copy of the [B, H, T, T] tensors is made.
    hsel = slice(None) if len(head_idx) == H else head_idx
    total = None
    for l in layer_idx:
        a = capture.attentions[l][:, hsel]
        if source == "grad_attention":
            a = a * capture.grad_attentions[l][:, hsel].clamp(min=0)
        # Sum the heads in the capture's precision (float32: ~1e-7 relative, the precision of
        # the probabilities themselves), then accumulate layers in float64 on [B, T, T].
        s = a.sum(1).double()
        total = s if total is None else total + s
    full = total / (len(layer_idx) * len(head_idx))  # [B, T, T]
    positions, player_mask = player_positions(capture.valid_mask)
    matrix = _players_matrix(full, positions)
    cls_row = _players_vector(readout_rows(full, capture.token_mask, readout,
                                           capture.valid_mask), positions)
    return AttentionGame(matrix=matrix, cls_row=cls_row, player_mask=player_mask,
                         positions=positions, source=source, layers=layer_idx, heads=head_idx)


# -- closed form -------------------------------------------------------------------------------
def pair_weights(M: torch.Tensor, game: str) -> torch.Tensor:
    """w_ij of a pairwise game (symmetric, any diagonal): M_ij + M_ji or max(M_ij, M_ji)."""
    Mt = M.transpose(-1, -2)
    if game == "mutual":
        return M + Mt
    if game == "max_mutual":
        return torch.maximum(M, Mt)
    raise ValueError(f"Unknown pairwise game {game!r}; use 'mutual' or 'max_mutual'.")


def attention_shapley(M: torch.Tensor | None, game: str = "max_mutual",
                      player_mask: torch.Tensor | None = None,
                      cls_row: torch.Tensor | None = None) -> torch.Tensor:
    """Exact Shapley values of an attention game, by the closed form of docs/method.md §1.

    ``M``: [n, n] or [B, n, n] aggregated attention over the players (rows = queries).
    ``player_mask``: [n] / [B, n] bool for ragged batches; padding players get exactly 0 and
    n is each input's own number of players. ``cls_row``: [n] / [B, n], needed by the
    ``cls`` game (whose Shapley values are the row itself). Returns [n] / [B, n].

    Pairwise games: ``φ_i = ½ Σ_{j≠i} w_ij + M_ii/n − Σ_{j≠i} M_jj / (n(n−1))`` (n ≥ 2;
    n = 1: ``φ = M_11``). Always computed and returned in float64.
    """
    if game not in GAMES:
        raise UserInputError(f"Unknown game {game!r}; use one of: {', '.join(GAMES)}.")
    ref = cls_row if game == "cls" else M
    if ref is None:
        raise ValueError("The cls game needs the [CLS] attention row (cls_row)."
                         if game == "cls" else f"The {game} game needs an attention matrix M.")
    single = ref.dim() == (1 if game == "cls" else 2)
    if game == "cls":
        c = ref.double()[None] if single else ref.double()
        mask = _mask(player_mask, c.shape, single, c.device)
        phi = torch.where(mask, c, torch.zeros((), dtype=c.dtype, device=c.device))
        return phi[0] if single else phi
    if M.shape[-1] != M.shape[-2]:
        raise ValueError(f"M must be square, got shape {tuple(M.shape)}.")
    Mb = M.double()[None] if single else M.double()
    mask = _mask(player_mask, Mb.shape[:2], single, Mb.device)
    zero = torch.zeros((), dtype=Mb.dtype, device=Mb.device)
    n = mask.sum(1, keepdim=True).double()  # players per input
    # where() rather than a product with the mask, so junk (even NaN) in padding cannot leak.
    eye = torch.eye(Mb.shape[-1], dtype=torch.bool, device=Mb.device)
    pair = mask[:, :, None] & mask[:, None, :] & ~eye
    w = torch.where(pair, pair_weights(Mb, game), zero)
    d = torch.where(mask, torch.diagonal(Mb, dim1=1, dim2=2), zero)
    others = d.sum(1, keepdim=True) - d
    # n = 1 (and n = 0) would divide by zero; there φ = M_11 (or nothing) by definition.
    big = n >= 2
    safe_n = n.clamp(min=2)
    phi = 0.5 * w.sum(2) + torch.where(big, d / safe_n - others / (safe_n * (safe_n - 1)), d)
    phi = torch.where(mask, phi, zero)
    return phi[0] if single else phi


def _mask(player_mask: torch.Tensor | None, shape: Sequence[int], single: bool,
          device: torch.device) -> torch.Tensor:
    """The player mask as [B, n] bool on `device` (all players when None)."""
    if player_mask is None:
        return torch.ones(*shape, dtype=torch.bool, device=device)
    pm = player_mask.bool().to(device)
    pm = pm[None] if single else pm
    if tuple(pm.shape) != tuple(shape):
        raise ValueError(f"player_mask has shape {tuple(player_mask.shape)}, expected "
                         f"{tuple(shape[1:]) if single else tuple(shape)}.")
    return pm


def game_value_fn(M: torch.Tensor | None, game: str, cls_row: torch.Tensor | None = None) -> ValueFn:
    """The characteristic function v(S) of an attention game on one input (vectorised).

    For tests and benchmarks: enumerating it reproduces :func:`attention_shapley`.
    """
    if game == "cls":
        c = cls_row.double()
        return lambda S: S.double() @ c
    Md = M.double()
    w = torch.triu(pair_weights(Md, game), diagonal=1)
    diag = torch.diagonal(Md)

    def v(S: torch.Tensor) -> torch.Tensor:
        s = S.double()
        size = s.sum(1)
        pairs = ((s @ w) * s).sum(1)  # Σ_{i<j, i,j∈S} w_ij
        single = s @ diag  # M_ii when S = {i}
        return torch.where(size == 1, single, pairs)

    return v


# -- generic estimators ------------------------------------------------------------------------
@dataclass
class ShapleyEstimate:
    """Shapley values with their standard errors (zero for exact results)."""

    values: torch.Tensor  # [n]
    stderr: torch.Tensor  # [n]
    num_evaluations: int
    num_permutations: int | None = None


def _check_n(n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"The number of players must be a positive integer, got {n!r}.")


def _evaluate(value_fn: ValueFn, coalitions: torch.Tensor, chunk: int) -> torch.Tensor:
    out = [torch.as_tensor(value_fn(coalitions[i:i + chunk])).double().reshape(-1).cpu()
           for i in range(0, coalitions.shape[0], chunk)]
    values = torch.cat(out)
    if values.shape[0] != coalitions.shape[0]:
        raise ValueError(f"value_fn returned {values.shape[0]} values for "
                         f"{coalitions.shape[0]} coalitions; it must return one per row.")
    return values


def enumerate_shapley(value_fn: ValueFn, n: int, chunk: int = 1 << 16) -> ShapleyEstimate:
    """Exact Shapley values by evaluating all 2^n coalitions (n ≤ 16).

    ``φ_i = Σ_{S ⊆ N∖{i}} |S|!(n−|S|−1)!/n! · (v(S ∪ {i}) − v(S))``, in float64.
    """
    _check_n(n)
    if n > MAX_ENUMERATE:
        raise UserInputError(f"Enumeration needs 2^n coalitions; n = {n} is over the limit of "
                             f"{MAX_ENUMERATE}. Use sample_shapley or the closed form.")
    codes = torch.arange(1 << n)
    bits = 1 << torch.arange(n)
    coalitions = (codes[:, None] & bits[None, :]) != 0  # row c = the coalition with code c
    v = _evaluate(value_fn, coalitions, chunk)
    size = coalitions.sum(1)
    # weight[s] = s!(n-s-1)!/n!, in log space so n = 16 stays exact to float64 precision.
    s = torch.arange(n, dtype=torch.float64)
    weight = torch.exp(torch.lgamma(s + 1) + torch.lgamma(n - s) - math.lgamma(n + 1))
    phi = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        without = codes[(codes & (1 << i)) == 0]
        phi[i] = (weight[size[without]] * (v[without | (1 << i)] - v[without])).sum()
    return ShapleyEstimate(values=phi, stderr=torch.zeros(n, dtype=torch.float64),
                           num_evaluations=1 << n)


def sample_shapley(value_fn: ValueFn, n: int, num_permutations: int = 200, seed: int = 0,
                   chunk: int = 1 << 14) -> ShapleyEstimate:
    """Shapley values estimated from random permutations, with standard errors.

    Each permutation adds players one at a time; a player's marginal contribution in it is an
    unbiased sample of its Shapley value. The estimate is the mean over permutations and the
    standard error is the sample std / √P (so ~99.7% of estimates lie within 3 stderr for
    large P). Every single permutation satisfies efficiency, so the estimates sum to
    v(N) − v(∅) exactly.
    """
    _check_n(n)
    if num_permutations < 2:
        raise UserInputError("sample_shapley needs at least 2 permutations for an error estimate.")
    gen = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(n, generator=gen) for _ in range(num_permutations)])
    # Coalition k of permutation p holds its first k players: rank[p, i] < k.
    rank = torch.empty_like(perms)
    rank.scatter_(1, perms, torch.arange(n).expand(num_permutations, n))
    ks = torch.arange(n + 1)
    coalitions = rank[:, None, :] < ks[None, :, None]  # [P, n+1, n]
    v = _evaluate(value_fn, coalitions.reshape(-1, n), chunk).view(num_permutations, n + 1)
    # Player i joins at step rank+1: contribution v(first rank+1) - v(first rank).
    contrib = v.gather(1, rank + 1) - v.gather(1, rank)  # [P, n]
    return ShapleyEstimate(values=contrib.mean(0),
                           stderr=contrib.std(0, unbiased=True) / math.sqrt(num_permutations),
                           num_evaluations=num_permutations * (n + 1),
                           num_permutations=num_permutations)

"""Where the two members of a matched pair differ, token by token.

A matched pair shows the same input with and without a concept (docs/method.md §7): the same
scene with a striped vs a plain object, the same sentence with and without a negation. Most
of its tokens (the background patches, the shared words) are identical on both sides; as CAV
training rows they carry no concept and drown the few that do. These functions find, for
every pair, the player tokens (patches / non-special tokens) where the inputs differ, so a
matched CAV can be trained on those rows alone.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch

from attnxai.models.base import Batch, ModelAdapter


def _patch_changes(a: torch.Tensor, b: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[B, rows*cols] bool: patches whose pixels differ between two image batches [B, C, H, W]."""
    B, _, H, W = a.shape
    rows, cols = grid
    diff = (a - b).abs().amax(1)  # [B, H, W]
    diff = diff.reshape(B, rows, H // rows, cols, W // cols).amax(dim=(2, 4))
    return (diff > 1e-6).reshape(B, rows * cols)


def _token_changes(a_ids: list[int], b_ids: list[int]) -> tuple[list[bool], list[bool]]:
    """Per token of each sequence: whether it lies in a non-matching stretch of the two.

    Where one side inserts tokens the other has none to mark, so on that side the tokens on
    both sides of the gap stand for the concept's absence ("is [not] open": "is" and "open").
    """
    a_changed, b_changed = [False] * len(a_ids), [False] * len(b_ids)
    matcher = difflib.SequenceMatcher(None, a_ids, b_ids, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        for changed, lo, hi in ((a_changed, i1, i2), (b_changed, j1, j2)):
            span = range(lo, hi) if hi > lo else (lo - 1, lo)
            for k in span:
                if 0 <= k < len(changed):
                    changed[k] = True
    return a_changed, b_changed


def _players(batch: Batch, i: int) -> torch.Tensor:
    return batch.valid_mask[i].nonzero().flatten()


def differing_players(adapter: ModelAdapter, examples: Sequence[Any], counterexamples: Sequence[Any],
                      batch_size: int | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """For each pair (examples[i], counterexamples[i]): bool masks over each member's players
    (in capture order) marking where the two differ.

    Images: patches whose preprocessed pixels differ. Text: tokens outside the longest common
    token blocks of the two sentences. A pair with no difference at all keeps every player, so
    no example is ever left without rows.
    """
    if len(examples) != len(counterexamples):
        raise ValueError("Matched pairs need as many counterexamples as examples.")
    out_a: list[torch.Tensor] = []
    out_b: list[torch.Tensor] = []
    bs = batch_size or adapter.batch_size
    for start in range(0, len(examples), bs):
        a = adapter.prepare(list(examples[start:start + bs]))
        b = adapter.prepare(list(counterexamples[start:start + bs]))
        if a.grid is not None:
            changed = _patch_changes(a.model_inputs["pixel_values"].float().cpu(),
                                     b.model_inputs["pixel_values"].float().cpu(), a.grid)
            for i in range(changed.shape[0]):
                for batch, out in ((a, out_a), (b, out_b)):
                    # Patch tokens follow the prefix tokens, one per grid cell, in raster order.
                    players = _players(batch, i)
                    prefix = batch.valid_mask.shape[1] - changed.shape[1]
                    out.append(changed[i, players - prefix])
        else:
            ids_a, ids_b = a.model_inputs["input_ids"].cpu(), b.model_inputs["input_ids"].cpu()
            for i in range(ids_a.shape[0]):
                pa, pb = _players(a, i), _players(b, i)
                ca, cb = _token_changes(ids_a[i, pa].tolist(), ids_b[i, pb].tolist())
                out_a.append(torch.tensor(ca, dtype=torch.bool))
                out_b.append(torch.tensor(cb, dtype=torch.bool))
    for masks in (out_a, out_b):
        for k, m in enumerate(masks):
            if not bool(m.any()):
                masks[k] = torch.ones_like(m)
    return out_a, out_b


def _text_alignment(a_ids: list[int], b_ids: list[int], tokens: str
                    ) -> tuple[list[int], list[int]]:
    """Aligned positions (one-to-one) of two token sequences, for patching one into the other.

    ``all``: every aligned position (common blocks, and substitutions of equal length).
    ``differing``: the aligned substitutions, plus the aligned tokens right next to an
    insertion or deletion, which carry its effect on their context (inserted tokens have no
    counterpart and cannot be patched).
    """
    out_a: list[int] = []
    out_b: list[int] = []
    matcher = difflib.SequenceMatcher(None, a_ids, b_ids, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            if tokens == "all":
                out_a += range(i1, i2)
                out_b += range(j1, j2)
        elif i2 - i1 == j2 - j1:  # a substitution of equal length aligns token by token
            out_a += range(i1, i2)
            out_b += range(j1, j2)
        elif tokens == "differing":
            for i, j in ((i1 - 1, j1 - 1), (i2, j2)):
                if 0 <= i < len(a_ids) and 0 <= j < len(b_ids):
                    out_a.append(i)
                    out_b.append(j)
    if tokens == "differing":  # neighbours of two nearby gaps may repeat
        seen = sorted(set(zip(out_a, out_b)))
        out_a, out_b = [i for i, _ in seen], [j for _, j in seen]
    return out_a, out_b


def batch_alignment(a: Batch, b: Batch, tokens: str = "differing"
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each pair (a[i], b[i]) of two prepared batches: positions in member a's and member
    b's token sequences (full sequence, special tokens included, in capture order) that
    correspond one to one, for activation patching (docs/method.md §6).

    Images always align patch for patch: ``differing`` gives the patches whose pixels differ,
    ``all`` every token ([CLS] included). Text aligns by the longest common token blocks; see
    :func:`_text_alignment` for the rule. A pair may get no position at all (then it cannot
    be patched and callers skip it).
    """
    if tokens not in ("differing", "all"):
        raise ValueError(f"tokens must be 'differing' or 'all', not {tokens!r}")
    if a.grid is not None:
        T = a.token_mask.shape[1]
        if tokens == "all":
            return [(torch.arange(T), torch.arange(T))] * a.token_mask.shape[0]
        changed = _patch_changes(a.model_inputs["pixel_values"].float().cpu(),
                                 b.model_inputs["pixel_values"].float().cpu(), a.grid)
        prefix = T - changed.shape[1]
        out = []
        for row in changed:
            pos = row.nonzero().flatten() + prefix
            out.append((pos, pos.clone()))
        return out
    out = []
    ids_a, ids_b = a.model_inputs["input_ids"].cpu(), b.model_inputs["input_ids"].cpu()
    for i in range(ids_a.shape[0]):
        real_a = a.token_mask[i].nonzero().flatten()
        real_b = b.token_mask[i].nonzero().flatten()
        ia, ib = _text_alignment(ids_a[i, real_a].tolist(), ids_b[i, real_b].tolist(), tokens)
        out.append((real_a[torch.tensor(ia, dtype=torch.long)],
                    real_b[torch.tensor(ib, dtype=torch.long)]))
    return out

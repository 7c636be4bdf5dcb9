"""Layer-wise activation patching of matched pairs (causal tracing; Vig et al. 2020, Meng et
al. 2022; docs/method.md §6).

For a pair (x_with, x_without) and a layer l, *restore* runs x_without with block l's output
replaced, on the aligned tokens where the pair differs, by x_with's; *remove* runs x_with with
x_without's activations patched in the same way. Per pair this gives how much of the total
logit effect ``f(x_with) - f(x_without)`` layer l's differing tokens carry into the output
(restore) and how much of it is lost without them (remove).

Cost: per batch of pairs, one plain pass of each member (recording block outputs) and one
pass per layer and direction, in which the blocks before the patched layer are replayed from
the recording instead of recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from attnxai.models.base import ModelAdapter
from attnxai.models.last_block import read_positions
from attnxai.models.oom import in_parts
from attnxai.models.pairs import batch_alignment
from attnxai.models.patching import (hidden_of, layer_work, patched_blocks,
                                     record_block_outputs)

DIRECTIONS = ("restore", "remove")
#: Progress callback: (pairs done, pairs in all); within a batch of pairs, a fraction of its
#: pairs by the passes done (so a stage's speed is known from its first layers on).
PairProgress = Callable[[float, int], None]


@dataclass
class PatchingResult:
    """Logits of every pair's members and of every patched run."""

    layers: list[int]
    with_logits: torch.Tensor  # [n, C]
    without_logits: torch.Tensor  # [n, C]
    restore_logits: torch.Tensor  # [n, L, C]: x_without with x_with's layer-l tokens
    remove_logits: torch.Tensor  # [n, L, C]: x_with with x_without's layer-l tokens
    patched: torch.Tensor  # [n] bool: the pair had tokens to patch (else its rows are NaN)

    def restored(self, k: int) -> torch.Tensor:
        """[n, L] logit of class k gained by restoring the concept's tokens at each layer."""
        return self.restore_logits[:, :, k] - self.without_logits[:, None, k]

    def removed(self, k: int) -> torch.Tensor:
        """[n, L] logit of class k lost by removing the concept's tokens at each layer."""
        return self.with_logits[:, None, k] - self.remove_logits[:, :, k]


def _splice(dst: torch.Tensor, src: torch.Tensor, index: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``dst`` with ``dst[b, t_dst] = src[b, t_src]`` at the aligned positions."""
    b, t_dst, t_src = index
    out = dst.clone()
    out[b, t_dst] = src[b, t_src].to(dst.dtype)
    return out


def _flat_index(positions: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device,
                receiver: int) -> tuple[torch.Tensor, ...]:
    donor = 1 - receiver
    b = torch.cat([torch.full((len(p[0]),), i, dtype=torch.long) for i, p in enumerate(positions)])
    t_dst = torch.cat([p[receiver] for p in positions]).long()
    t_src = torch.cat([p[donor] for p in positions]).long()
    return b.to(device), t_dst.to(device), t_src.to(device)


@torch.no_grad()
def patch_pairs(adapter: ModelAdapter, with_items: Sequence[Any], without_items: Sequence[Any],
                layers: Sequence[int] | None = None, tokens: str = "differing",
                batch_size: int | None = None, progress: PairProgress | None = None
                ) -> PatchingResult:
    """Patch each pair's layer-l activations both ways, for every layer in ``layers``.

    ``tokens``: ``differing`` patches the aligned tokens where the pair differs
    (:func:`attnxai.models.pairs.batch_alignment`), ``all`` every aligned token.
    """
    n = len(with_items)
    if n == 0 or len(without_items) != n:
        raise ValueError("pairs need the same, non-zero number of members on each side")
    layers = list(range(adapter.num_layers)) if layers is None else list(layers)
    bs = batch_size or adapter.batch_size
    # A batch's passes, in forward passes: two recorded, one edit per layer and way.
    cost = layer_work(layers, adapter)
    passes = 2 + 2 * sum(cost)

    def run(start: int, stop: int) -> dict[str, Any]:
        batches = {"with": adapter.prepare(list(with_items[start:stop])),
                   "without": adapter.prepare(list(without_items[start:stop]))}
        positions = batch_alignment(batches["with"], batches["without"], tokens)  # (with, without)
        recorded = {k: record_block_outputs(adapter, b) for k, b in batches.items()}
        read = {k: read_positions(adapter.pooling, b.token_mask.to(adapter.device))
                for k, b in batches.items()}
        out: dict[str, Any] = {k: recorded[k][0].float().cpu() for k in ("with", "without")}
        out["patched"] = [len(p[0]) > 0 for p in positions]
        done = 2.0
        for direction, receiver, donor, r in (("restore", "without", "with", 1),
                                              ("remove", "with", "without", 0)):
            index = _flat_index(positions, adapter.device, receiver=r)
            donor_out, replay = recorded[donor][1], recorded[receiver][1]
            per_layer = []
            for layer, c in zip(layers, cost):
                src = hidden_of(donor_out[layer])
                with patched_blocks(adapter, {layer: lambda h, src=src: _splice(h, src, index)},
                                    replay=replay, rows=read[receiver]):
                    per_layer.append(adapter.forward_logits(batches[receiver]).float().cpu())
                done += c
                if progress is not None:
                    progress(start + (stop - start) * done / passes, n)
            out[direction] = torch.stack(per_layer, dim=1)
        return out

    outs = list(in_parts(adapter, "patching", n, bs, run))
    patched = [p for out in outs for p in out["patched"]]
    mask = torch.tensor(patched, dtype=torch.bool)
    result = PatchingResult(layers, *(torch.cat([out[k] for out in outs])
                                      for k in ("with", "without", "restore", "remove")), mask)
    # A pair with nothing to patch has no patched runs: its rows would only repeat the
    # unpatched logits, so they are marked missing rather than counted as "no effect".
    result.restore_logits[~mask] = float("nan")
    result.remove_logits[~mask] = float("nan")
    return result

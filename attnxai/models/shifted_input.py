"""The block after a CAV intervention's edit, given its input's projections.

A CAV intervention moves every player token of block l's output by the same step along one
direction per pass row: block l+1 receives ``h + s·v`` (``h`` the recorded output). Where that
block's first operations on its input are its query, key and value projections (BERT's
post-norm layout: :func:`attnxai.models.last_block.layout`), they are linear in it, so
``W(h + s·v) = W h + s·(W v)``: the recorded input's projections once, plus one vector per
direction, instead of three matrix products over every stacked row. That is a quarter of the
block's products, for the first block after every edited layer but the last two. Pre-norm blocks
(ViT) normalise the input first, so nothing is linear there.

The first time a block's projections are given so, they are checked against the projections of
the input the block really receives; a mismatch runs the block as it is from then on.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from attnxai.errors import UserInputError
from attnxai.models.last_block import layout, matches

#: Per projection module: whether its output given from the shift matched the real one.
_CHECKED: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def takes_shifted_input(adapter: Any) -> bool:
    """Whether the block after an intervention's edit takes its projections from the
    recording (a model of BERT's layout, with three blocks or more: the block after the edit
    must not be the last, which runs in its read rows)."""
    try:
        blocks = adapter.block_modules()
    except UserInputError:  # blocks shared across layers (ALBERT): no edit reruns any
        return False
    return len(blocks) > 2 and layout(blocks[0]) == "post"


@contextmanager
def shifted_input(block: torch.nn.Module, base: torch.Tensor, steps: torch.Tensor,
                  players: torch.Tensor) -> Iterator[None]:
    """Within the block, ``block`` (run on the stacked rows ``k·B + b``: input ``b`` moved by
    ``steps[k]`` [c, d] at its ``players`` [B, T, 1]) takes its query, key and value
    projections from those of ``base`` [B, T, d], the unmoved input. Nothing changes for a
    block of another layout."""
    if layout(block) != "post":
        yield
        return
    own = block.attention.self
    modules = [m for m in (own.query, own.key, own.value) if _CHECKED.get(m) is not False]
    c, B = len(steps), len(base)
    mask = players.to(base.dtype).repeat(c, 1, 1)  # [c·B, T, 1]
    try:
        for module in modules:
            module.forward = _given(module, module(base), steps.to(module.weight.dtype)
                                   @ module.weight.T, B, mask)
        yield
    finally:
        for module in modules:
            del module.forward


def _given(module: torch.nn.Module, projected: torch.Tensor, moved: torch.Tensor, B: int,
           mask: torch.Tensor) -> Any:
    """The forward of a projection that returns the base's ``projected`` [B, T, d'] plus each
    direction's ``moved`` [c, d'] at the players (checked against the real one on first use)."""
    whole = type(module).forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = projected.repeat(len(moved), 1, 1) + moved.repeat_interleave(B, 0)[:, None, :] * mask
        if module not in _CHECKED:
            real = whole(module, x)
            _CHECKED[module] = matches(out, real)
            if not _CHECKED[module]:
                return real
        return out

    return forward

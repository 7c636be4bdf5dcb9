"""Block-output hooks for causal interventions, the same for every adapter.

Every adapter exposes its transformer blocks (:meth:`ModelAdapter.block_modules`), and the
captured activations of layer ``l`` are exactly block ``l``'s output. Interventions therefore
edit that output with a forward hook, whatever the backend (Hugging Face blocks return a tuple
whose first element is the hidden state, timm blocks a tensor).

An intervention at layer ``l`` leaves blocks ``0..l-1`` unchanged, so their outputs from one
plain run of the batch are replayed instead of recomputed (:func:`patched_blocks` with
``replay``): blocks up to ``l`` cost nothing, which roughly halves the cost of patching every
layer in turn (docs/method.md §6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from attnxai.models.base import Batch, ModelAdapter
from attnxai.models.last_block import reads_rows, rows_forward
from attnxai.models.shifted_input import takes_shifted_input

#: Edits one block's hidden state [B, T, d] and returns the new one.
Edit = Callable[[torch.Tensor], torch.Tensor]


def hidden_of(output: Any) -> torch.Tensor:
    """The hidden state inside a block's raw output (tensor, or tuple led by it)."""
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


#: A pass that runs only the head (an edit at the last block), in blocks: measured at 8% of a
#: block on BERT-base (the head reads one token; the pass's own overhead is most of it).
READOUT_BLOCKS = 0.1
#: The last block computed in the read rows only (:mod:`attnxai.models.last_block`), in
#: blocks: its keys and values for every token, the rest for one row (measured at 17% of a
#: block on BERT-base with 12 tokens; less with more tokens).
READ_ROWS_BLOCKS = 0.2
#: The block after a CAV intervention's edit, its projections given (BERT's layout), in blocks:
#: measured at 79% of a block on BERT-base.
SHIFTED_BLOCKS = 0.8


def layer_work(layers: Sequence[int], adapter: ModelAdapter, shifts: bool = False
               ) -> list[float]:
    """The cost of an edit at each of ``layers``, in forward passes of the adapter's blocks:
    the blocks before and at the edited one are replayed from a recording, so only the
    ``num_layers - 1 - l`` blocks after it run (the last in its read rows only, where
    :func:`attnxai.models.last_block.reads_rows`), and the head (:data:`READOUT_BLOCKS`). The
    embeddings, which an edit does not rerun, cost next to nothing beside a block. ``shifts``:
    the edit is a CAV intervention's, whose next block takes its input's projections from the
    recording where it can (:data:`SHIFTED_BLOCKS`, :mod:`attnxai.models.shifted_input`)."""
    n = adapter.num_layers
    last = READ_ROWS_BLOCKS if reads_rows(adapter) else 1.0
    first = SHIFTED_BLOCKS if shifts and takes_shifted_input(adapter) else 1.0
    whole = [max(n - 2 - l, 0) for l in layers]
    return [(w - (1.0 - first) * (w > 0) + (last if l < n - 1 else 0.0) + READOUT_BLOCKS) / n
            for l, w in zip(layers, whole)]


@torch.no_grad()
def record_block_outputs(adapter: ModelAdapter, batch: Batch) -> tuple[torch.Tensor, list[Any]]:
    """Logits [B, C] of a plain forward pass and every block's raw output, in order."""
    outputs: list[Any] = []
    handles = [blk.register_forward_hook(lambda m, i, o: outputs.append(o))
               for blk in adapter.block_modules()]
    try:
        logits = adapter.forward_logits(batch)
    finally:
        for h in handles:
            h.remove()
    return logits, outputs


@contextmanager
def patched_blocks(adapter: ModelAdapter, edits: dict[int, Edit],
                   replay: list[Any] | None = None, rows: torch.Tensor | None = None
                   ) -> Iterator[None]:
    """Within the block, forward passes apply ``edits[l]`` to block ``l``'s output.

    ``replay``: the raw block outputs of an unpatched run of the *same* batch
    (:func:`record_block_outputs`); blocks up to the first edited one then return those
    instead of computing (the edited block's replayed output goes through its edit).
    ``rows``: [B, R] the positions the head reads in that batch
    (:func:`attnxai.models.last_block.read_positions`); the last block, when it runs and is
    not edited, then computes only those rows (:mod:`attnxai.models.last_block`).
    """
    blocks = adapter.block_modules()
    bad = [l for l in edits if not 0 <= l < len(blocks)]
    if bad:
        raise ValueError(f"layers {bad} out of range for {len(blocks)} blocks")
    handles, replaced = [], []
    try:
        first = min(edits) if edits else -1
        if replay is not None:
            for k in range(first + 1):
                blk = blocks[k]
                # Instance attribute shadows the class's forward; hooks still run around it.
                blk.forward = (lambda out: (lambda *a, **kw: out))(replay[k])
                replaced.append(blk)
        last = len(blocks) - 1
        if rows is not None and first < last and last not in edits:
            forward = rows_forward(blocks[last], rows)
            if forward is not None:
                blocks[last].forward = forward
                replaced.append(blocks[last])
        for layer, edit in edits.items():
            def hook(module: Any, inputs: Any, output: Any, edit: Edit = edit) -> Any:
                return _with_hidden(output, edit(hidden_of(output)))
            handles.append(blocks[layer].register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        for blk in replaced:
            del blk.forward

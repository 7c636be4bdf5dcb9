"""CAV intervention: push a layer's player tokens along a concept direction and measure the
output (the finite-step, causal counterpart of the directional derivative; docs/method.md §6).

For a target input x, a layer l, a unit CAV v and a step α, every player token of block l's
output becomes ``h_t + α·v``; the effect is the change of the target logit. To first order it
is ``α · Σ_t ∇_{h_t} f_k · v``, the sum of the token-level directional derivatives. An audit
takes α from the concept (the mean projection gap between its examples and its negatives) and
moves the random CAVs of its null by the same α (:func:`attnxai.effects.run.intervention_values`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from attnxai.models.base import Batch, ModelAdapter, Target, per_input_target
from attnxai.models.last_block import read_positions
from attnxai.models.lengths import batches_of
from attnxai.models.oom import in_parts
from attnxai.models.patching import hidden_of, patched_blocks, record_block_outputs
from attnxai.models.shifted_input import shifted_input

#: Progress callback: (work done, work in all), the inputs counted by their tokens where their
#: lengths differ (a pass's cost grows with its tokens).
InputProgress = Callable[[float, float], None]


#: Tokens (inputs x directions x tokens) of one batched intervention pass: directions are
#: stacked into the batch up to this many tokens (and always one direction's inputs), so memory
#: stays bounded whatever the length: 800 rows of 20 tokens, 83 of 197.
MAX_TOKENS = 16384


def _repeat(value: Any, times: int) -> Any:
    """A batch tensor (or a block's tuple output, or None) repeated ``times`` along the batch."""
    if isinstance(value, torch.Tensor):
        return value.repeat(times, *([1] * (value.dim() - 1)))
    if isinstance(value, tuple):
        return tuple(_repeat(v, times) for v in value)
    return value


def repeat_batch(batch: Batch, times: int) -> Batch:
    """``batch`` stacked ``times`` over (copy-major: rows k·B .. k·B + B - 1 are copy k)."""
    return Batch(model_inputs={k: _repeat(v, times) for k, v in batch.model_inputs.items()},
                 valid_mask=_repeat(batch.valid_mask, times),
                 token_mask=_repeat(batch.token_mask, times),
                 tokens=None if batch.tokens is None else batch.tokens * times, grid=batch.grid)


@dataclass
class Recording:
    """One batch of inputs as prepared, its plain pass's logits and target classes, and every
    block's output in that pass (what an intervention at any layer replays)."""

    batch: Batch
    base: torch.Tensor  # [B] target logits
    target: torch.Tensor  # [B] target classes
    replay: list[Any]


#: Recordings of the batches of one list of inputs and target, by which inputs they hold:
#: passed to every :func:`cav_intervention` on them, the plain pass runs once for all layers.
Recordings = dict[tuple[int, ...], Recording]


@torch.no_grad()
def cav_intervention(adapter: ModelAdapter, inputs: Sequence[Any], target: Target, layer: int,
                     directions: torch.Tensor, alphas: torch.Tensor,
                     batch_size: int | None = None, progress: InputProgress | None = None,
                     max_tokens: int = MAX_TOKENS, recordings: Recordings | None = None
                     ) -> torch.Tensor:
    """[N, K] change of each input's target logit when block ``layer``'s player tokens move by
    ``alphas[k] * directions[k]`` (``directions`` [K, d], ``alphas`` [K]).

    Per batch of inputs of alike length (:mod:`attnxai.models.lengths`), one plain pass
    records every block's output (kept in ``recordings`` where given, for the next call on the
    same inputs and target); then the directions go through in chunks stacked into the batch
    (each chunk one forward pass, blocks up to ``layer`` replayed from the recording), at most
    ``max_tokens`` tokens at a time (fewer where the device runs out of memory:
    :mod:`attnxai.models.oom`)."""
    if directions.ndim != 2 or alphas.shape != directions.shape[:1]:
        raise ValueError("directions must be [K, d] and alphas [K]")
    if not 0 <= layer < adapter.num_layers:
        raise ValueError(f"layer {layer} out of range for {adapter.num_layers} layers")
    steps = (alphas[:, None] * directions).to(adapter.device)  # [K, d]
    n, bs = len(inputs), batch_size or adapter.batch_size
    per_input = per_input_target(target)
    counts = adapter.token_counts(inputs)
    weight = counts or [1] * n
    out, done, total = torch.empty(n, len(steps)), 0, sum(weight)
    recordings = {} if recordings is None else recordings
    for group in batches_of(counts, n, bs):
        items = [inputs[i] for i in group]
        targets = [target[i] for i in group] if per_input else target

        def part(i: int, j: int, group: list[int] = group, items: list[Any] = items,
                 targets: Target = targets) -> torch.Tensor:
            key = tuple(group[i:j])
            if key not in recordings:
                recordings[key] = _record(adapter, items[i:j],
                                          targets[i:j] if per_input else targets)
            return _intervene(adapter, recordings[key], layer, steps, max_tokens)

        out[group] = torch.cat(list(in_parts(adapter, "intervention", len(items), len(items),
                                             part)))
        done += sum(weight[i] for i in group)
        if progress is not None:
            progress(done, total)
    return out


def _record(adapter: ModelAdapter, inputs: list[Any], target: Target) -> Recording:
    """The :class:`Recording` of one batch of inputs."""
    batch = adapter.prepare(inputs)
    logits, replay = record_block_outputs(adapter, batch)
    tgt = adapter.resolve_target(target, logits)
    return Recording(batch, logits[torch.arange(len(tgt), device=tgt.device), tgt], tgt, replay)


def _intervene(adapter: ModelAdapter, recorded: Recording, layer: int, steps: torch.Tensor,
               max_tokens: int) -> torch.Tensor:
    """[B, K] of :func:`cav_intervention` for one recorded batch of inputs."""
    batch, base_k, tgt, replay = recorded.batch, recorded.base, recorded.target, recorded.replay
    B = len(tgt)
    players = batch.valid_mask.to(adapter.device)[:, :, None]
    read = read_positions(adapter.pooling, batch.token_mask.to(adapter.device))
    # The block after the edited one takes its input's projections from the recording's
    # (where its layout allows); the last block, run in its read rows, is left as it is.
    blocks = adapter.block_modules()

    def run(k0: int, k1: int) -> torch.Tensor:
        chunk, c = steps[k0:k1], k1 - k0  # [c, d]
        big = repeat_batch(batch, c) if c > 1 else batch
        # Row k·B + b moves input b along direction k0 + k.
        add = chunk.repeat_interleave(B, dim=0)[:, None, :] * players.repeat(c, 1, 1)
        # Only the edited block's output feeds the blocks that run; those before it return
        # their recordings to replayed blocks, which ignore them.
        rep = [*replay[:layer], _repeat(replay[layer], c), *replay[layer + 1:]]
        with patched_blocks(adapter, {layer: lambda h: h + add.to(h.dtype)}, replay=rep,
                            rows=None if read is None else read.repeat(c, 1)), \
                (shifted_input(blocks[layer + 1], hidden_of(replay[layer]), chunk, players)
                 if layer + 2 < len(blocks) else nullcontext()):
            logits = adapter.forward_logits(big)
        picked = logits[torch.arange(c * B, device=logits.device), tgt.repeat(c)]
        # Subtract in the model's precision: a small step's change is below float32's
        # resolution of the logit itself.
        return (picked - base_k.repeat(c)).float().reshape(c, B).T

    per_pass = max(1, max_tokens // (B * players.shape[1]))
    return torch.cat(list(in_parts(adapter, "intervention directions", len(steps), per_pass,
                                   run)), dim=1).cpu()


def first_order_intervention(grad_activations: torch.Tensor, valid_mask: torch.Tensor,
                             directions: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """[N, K] the first-order prediction of :func:`cav_intervention` from one backward pass:
    ``alphas[k] * Σ_t ∇_{h_t} f_k · directions[k]`` over each input's player tokens, i.e.
    TCAV's unweighted token derivatives summed and put in output units by the step.
    ``grad_activations`` [N, T, d] of the layer (a capture with gradients of the target),
    ``valid_mask`` [N, T] its players."""
    s = torch.einsum("ntd,kd->nkt", grad_activations.float(), directions.float())
    return (s * valid_mask[:, None, :].float()).sum(-1) * alphas.float()[None, :]

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
from typing import Any

import torch

from attnxai.models.base import ModelAdapter, Target
from attnxai.models.patching import patched_blocks, record_block_outputs

#: Progress callback: (inputs done, inputs in all).
InputProgress = Callable[[int, int], None]


@torch.no_grad()
def cav_intervention(adapter: ModelAdapter, inputs: Sequence[Any], target: Target, layer: int,
                     directions: torch.Tensor, alphas: torch.Tensor,
                     batch_size: int | None = None, progress: InputProgress | None = None
                     ) -> torch.Tensor:
    """[N, K] change of each input's target logit when block ``layer``'s player tokens move by
    ``alphas[k] * directions[k]`` (``directions`` [K, d], ``alphas`` [K])."""
    if directions.ndim != 2 or alphas.shape != directions.shape[:1]:
        raise ValueError("directions must be [K, d] and alphas [K]")
    if not 0 <= layer < adapter.num_layers:
        raise ValueError(f"layer {layer} out of range for {adapter.num_layers} layers")
    steps = (alphas[:, None] * directions).to(adapter.device)  # [K, d]
    bs = batch_size or adapter.batch_size
    out: list[torch.Tensor] = []
    n = len(inputs)
    for start in range(0, n, bs):
        batch = adapter.prepare(list(inputs[start:start + bs]))
        base, replay = record_block_outputs(adapter, batch)
        tgt = adapter.resolve_target(target if isinstance(target, (int, str)) or target is None
                                     else target[start:start + bs], base)
        players = batch.valid_mask.to(adapter.device)[:, :, None]
        rows = torch.arange(len(tgt), device=tgt.device)
        base_k = base[rows, tgt]
        deltas = []
        for step in steps:
            with patched_blocks(adapter, {layer: lambda h, step=step: h + players * step.to(h.dtype)},
                                replay=replay):
                logits = adapter.forward_logits(batch)
            # Subtract in the model's precision: a small step's change is below float32's
            # resolution of the logit itself.
            deltas.append((logits[rows, tgt] - base_k).float())
        out.append(torch.stack(deltas, dim=1).cpu())
        if progress is not None:
            progress(min(start + bs, n), n)
    return torch.cat(out)


def first_order_intervention(grad_activations: torch.Tensor, valid_mask: torch.Tensor,
                             directions: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """[N, K] the first-order prediction of :func:`cav_intervention` from one backward pass:
    ``alphas[k] * Σ_t ∇_{h_t} f_k · directions[k]`` over each input's player tokens, i.e.
    TCAV's unweighted token derivatives summed and put in output units by the step.
    ``grad_activations`` [N, T, d] of the layer (a capture with gradients of the target),
    ``valid_mask`` [N, T] its players."""
    s = torch.einsum("ntd,kd->nkt", grad_activations.float(), directions.float())
    return (s * valid_mask[:, None, :].float()).sum(-1) * alphas.float()[None, :]

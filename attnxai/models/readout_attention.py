"""Each layer's attention in the readout's query row(s) only, without the T × T matrices.

TCAV weights tokens by the attention of the row(s) the head reads (:mod:`attnxai.models.
readouts`), so a capture for TCAV needs one row per layer, not the matrix: at T = 2,048 an eager
layer holds (and autograd keeps for the backward pass) H × T × T probabilities per input. This
module registers an attention implementation with Hugging Face's attention interface: the
layer's output comes from PyTorch's fused scaled-dot-product attention (which never keeps the
matrix), and the readout rows are computed beside it from the same queries and keys (after
rotary positions, grouped key heads repeated, the model's own mask), softmaxed, and mixed by the
readout's weights into one row [B, H, 1, T]. That row is a side computation: the logits do not
depend on it, so it has no gradient.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator
from typing import Any

import torch

from attnxai.models.readouts import read_rows

NAME = "attnxai_readout"
#: [B, T] weights of the query rows the head reads, for the forward pass under way.
_WEIGHTS: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "attnxai_readout_weights", default=None)


def _rows(module: Any, query: torch.Tensor, key: torch.Tensor, attention_mask: Any,
          scaling: float | None) -> torch.Tensor:
    """The readout-weighted attention row [B, H, 1, Tk] of one layer."""
    from transformers.integrations.sdpa_attention import repeat_kv

    weights = _WEIGHTS.get()
    B, H, T, D = query.shape
    key = repeat_kv(key, H // key.shape[1])
    Tk = key.shape[2]
    wts, idx = read_rows(weights.to(query.device))  # [B, R]: the rows read, and their weights
    R = idx.shape[1]
    q = query.gather(2, idx[:, None, :, None].expand(B, H, R, D))
    scale = scaling if scaling is not None else D ** -0.5
    scores = (q.float() @ key.float().transpose(-1, -2)) * scale  # [B, H, R, Tk]
    if attention_mask is not None:
        m = attention_mask[..., :Tk].expand(B, -1, T, Tk)
        m = m.gather(2, idx[:, None, :, None].expand(B, m.shape[1], R, Tk))
        scores = (scores.masked_fill(~m, float("-inf")) if m.dtype == torch.bool
                  else scores + m.float())
    elif getattr(module, "is_causal", False):  # the mask was left to SDPA's is_causal
        later = torch.arange(Tk, device=q.device)[None, None, None, :] > idx[:, None, :, None]
        scores = scores.masked_fill(later, float("-inf"))
    probs = scores.softmax(-1)
    return (probs * wts[:, None, :, None].float()).sum(2, keepdim=True).to(query.dtype)


def _attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attention_mask: Any, scaling: float | None = None, dropout: float = 0.0,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    kwargs.pop("output_attentions", None)  # asked of the model, answered by the row below
    # Logit soft-capping (Gemma 2) is refused by SDPA with a ValueError: the adapter then
    # records the full matrices instead.
    out, _ = sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                    dropout=dropout, **kwargs)
    with torch.no_grad():  # nothing downstream depends on the row
        row = _rows(module, query, key, attention_mask, scaling)
    return out, row


@functools.cache
def register() -> None:
    """Make ``NAME`` an attention implementation (and its mask SDPA's), once per process."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register(NAME, _attention)
    AttentionMaskInterface.register(NAME, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


@contextlib.contextmanager
def readout_attention(model: Any, weights: torch.Tensor) -> Iterator[None]:
    """Within the block, ``model`` (a Hugging Face model) returns as its attentions each layer's
    row read by the head, mixed by ``weights`` [B, T] (readout_weights of the batch)."""
    register()
    previous = model.config._attn_implementation
    token = _WEIGHTS.set(weights)
    model.set_attn_implementation(NAME)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
        _WEIGHTS.reset(token)

"""The last block in the rows its head reads only, for the passes an edit reruns.

A head that reads one or two tokens (the ``cls``, ``last`` and ``cls+dist`` readouts:
:data:`attnxai.models.readouts.ROW_READOUTS`) sees nothing of the last block's other rows. So
in a pass that reruns the blocks after an edited layer (a CAV intervention), the last block's
queries, attention output and feed-forward are computed for those rows alone; its keys and
values still come from every token. That is most of the block's cost, and the last block is a
sixth of the blocks the interventions of a 12-layer model rerun (docs/method.md §6.3). The
other rows of its output keep the block's input: nothing reads them.

Two layouts of Hugging Face encoder blocks are known: BERT's post-norm block (``attention.self``
with ``query``/``key``/``value``, ``attention.output``, ``intermediate``, ``output``; also
RoBERTa, ELECTRA, XLM-R and the other copies of it) and the pre-norm block of ViT and DeiT
(``layernorm_before``, ``attention`` with ``q_proj``/``k_proj``/``v_proj``/``o_proj``,
``layernorm_after``, ``mlp``). The first time a block runs so, its rows are checked against the
whole block on the same input; a block of another layout, or one whose rows differ (a library
version that changed the layout), runs whole.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from attnxai.errors import UserInputError
from attnxai.models.readouts import ROW_READOUTS, read_rows, readout_weights

#: Per block: whether its rows computed alone matched the whole block (checked on first use).
_CHECKED: weakref.WeakKeyDictionary[torch.nn.Module, bool] = weakref.WeakKeyDictionary()


def layout(block: torch.nn.Module) -> str | None:
    """``post`` (BERT's), ``pre`` (ViT's) or None for a block this module does not know."""
    attention = getattr(block, "attention", None)
    own = getattr(attention, "self", None)
    if all(hasattr(own, n) for n in ("query", "key", "value", "attention_head_size")) and all(
            hasattr(block, n) for n in ("intermediate", "output")) and hasattr(attention, "output"):
        return "post"
    if all(hasattr(attention, n) for n in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")) \
            and all(hasattr(block, n) for n in ("layernorm_before", "layernorm_after", "mlp")):
        return "pre"
    return None


def _attend(projections: tuple[Any, Any, Any], head_dim: int, scaling: float,
            x_rows: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention output [B, R, H·D] of the query rows ``x_rows`` [B, R, d] over every token of
    ``x`` [B, T, d] (``mask`` additive or boolean, [B, 1 or H, R or 1, T])."""
    query, key, value = projections
    B, R, T = x.shape[0], x_rows.shape[1], x.shape[1]
    q = query(x_rows).view(B, R, -1, head_dim).transpose(1, 2)
    k = key(x).view(B, T, -1, head_dim).transpose(1, 2)
    v = value(x).view(B, T, -1, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)
    return out.transpose(1, 2).reshape(B, R, -1)


def _query_rows(mask: Any, rows: torch.Tensor) -> torch.Tensor | None:
    """The block's attention mask ([B or 1, 1 or H, T or 1, T]) in the query rows ``rows``."""
    if not isinstance(mask, torch.Tensor):
        return None
    B, R = rows.shape
    mask = mask.expand(B, *mask.shape[1:])
    if mask.shape[2] == 1:
        return mask
    return mask.gather(2, rows[:, None, :, None].expand(B, mask.shape[1], R, mask.shape[3]))


def _rows(block: torch.nn.Module, kind: str, h: torch.Tensor, rows: torch.Tensor,
          mask: Any) -> torch.Tensor:
    """The block's output [B, R, d] in the rows ``rows`` [B, R] of its input ``h`` [B, T, d]."""
    at = rows[:, :, None].expand(-1, -1, h.shape[-1])
    h_rows = h.gather(1, at)
    mask = _query_rows(mask, rows)
    if kind == "post":
        own = block.attention.self
        context = _attend((own.query, own.key, own.value), own.attention_head_size,
                          own.scaling, h_rows, h, mask)
        a = block.attention.output(context, h_rows)
        return block.output(block.intermediate(a), a)
    attention = block.attention
    x = block.layernorm_before(h)
    context = _attend((attention.q_proj, attention.k_proj, attention.v_proj),
                      attention.head_dim, attention.scaling, x.gather(1, at), x, mask)
    a = attention.o_proj(context) + h_rows
    return block.mlp(block.layernorm_after(a)) + a


def matches(given: torch.Tensor, real: torch.Tensor) -> bool:
    """Whether a shortcut's ``given`` output equals the ``real`` one to rounding (1e-4 of its
    scale, or 8 of its type's epsilon in half precision): the check on a shortcut's first use."""
    scale = max(float(real.detach().abs().max()), 1.0)
    return bool((given - real).detach().abs().max()
                <= max(1e-4, 8 * torch.finfo(real.dtype).eps) * scale)


def read_positions(readout: str, token_mask: torch.Tensor) -> torch.Tensor | None:
    """[B, R] the positions of the rows a head of ``readout`` reads in a batch with this
    ``token_mask``; None for readouts that read every token or the patches' mean."""
    if readout not in ROW_READOUTS:
        return None
    return read_rows(readout_weights(token_mask, readout))[1]


def reads_rows(adapter: Any) -> bool:
    """Whether an edit's passes compute the adapter's last block in its read rows only: a
    readout of one or two rows, a known layout, and no mismatch found on first use."""
    if adapter.pooling not in ROW_READOUTS:
        return False
    try:
        block = adapter.block_modules()[-1]
    except UserInputError:  # blocks shared across layers (ALBERT): no edit reruns any
        return False
    return layout(block) is not None and _CHECKED.get(block) is not False


def rows_forward(block: torch.nn.Module, rows: torch.Tensor
                 ) -> Callable[..., Any] | None:
    """A forward for ``block`` (the model's last) that computes only the rows ``rows`` [B, R]
    of each input (the readout's, :func:`attnxai.models.readouts.readout_weights`) and keeps
    its input in the others; None where the block's layout is unknown or its rows did not
    match the whole block's."""
    kind = layout(block)
    if kind is None or _CHECKED.get(block) is False:
        return None
    whole = type(block).forward

    def forward(hidden_states: torch.Tensor, attention_mask: Any = None, *args: Any,
                **kwargs: Any) -> Any:
        checked = _CHECKED.get(block)
        if checked is False:
            return whole(block, hidden_states, attention_mask, *args, **kwargs)
        if checked:
            part = _rows(block, kind, hidden_states, rows, attention_mask)
        else:  # first use: the rows against the whole block (a layout that fails runs whole)
            try:
                part = _rows(block, kind, hidden_states, rows, attention_mask)
            except torch.OutOfMemoryError:  # the pass is run again in halves (models.oom)
                raise
            except (AttributeError, RuntimeError, TypeError, ValueError):
                part = None
            full = whole(block, hidden_states, attention_mask, *args, **kwargs)
            ok = part is not None and isinstance(full, torch.Tensor) and matches(
                part, full.gather(1, rows[:, :, None].expand(-1, -1, full.shape[-1])))
            _CHECKED[block] = ok
            if not ok:
                return full
        return hidden_states.scatter(1, rows[:, :, None].expand(-1, -1, part.shape[-1]), part)

    return forward

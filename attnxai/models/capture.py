"""The result of one capture: logits, per-layer activations/attentions and their gradients."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F


@dataclass
class Capture:
    """Everything one forward (+ one backward) pass records for a batch of inputs.

    Shapes: B inputs, T tokens (text: word pieces incl. specials and padding; vision: prefix
    tokens + patches), L layers, H heads, d hidden size, C classes.
    """

    logits: torch.Tensor  # [B, C]
    probs: torch.Tensor  # [B, C]
    target: torch.Tensor  # [B] class whose logit the gradients are of
    activations: list[torch.Tensor]  # L x [B, T, d], output of each block
    attentions: list[torch.Tensor]  # L x [B, H, T, T], rows = queries (``attention_rows``: [B, H, 1, T])
    valid_mask: torch.Tensor  # [B, T] non-special, non-padding tokens / patches
    token_mask: torch.Tensor  # [B, T] every real (non-padding) position, specials included
    grad_activations: list[torch.Tensor] | None = None  # L x [B, T, d]
    grad_attentions: list[torch.Tensor] | None = None  # L x [B, H, T, T]
    tokens: list[list[str]] | None = None  # text: B lists of T token strings
    grid: tuple[int, int] | None = None  # vision: (patch rows, patch cols)
    #: True when ``attentions`` hold only the row the head reads per layer ([B, H, 1, T], mixed
    #: by the readout's weights; no ``grad_attentions``), as TCAV asks (attention="readout").
    attention_rows: bool = False

    @property
    def predictions(self) -> torch.Tensor:
        """Predicted class index per input, [B]."""
        return self.logits.argmax(dim=-1)

    @property
    def num_layers(self) -> int:
        return len(self.activations)

    def __len__(self) -> int:
        return self.logits.shape[0]

    def nbytes(self) -> int:
        """Bytes held by the tensors of this capture."""
        total = 0
        for f in fields(self):
            value = getattr(self, f.name)
            items = value if isinstance(value, list) else [value]
            total += sum(t.numel() * t.element_size() for t in items if isinstance(t, torch.Tensor))
        return total

    @staticmethod
    def concat(parts: list[Capture]) -> Capture:
        """Join per-batch captures, zero-padding the token axes to the longest batch."""
        if len(parts) == 1:
            return parts[0]
        T = max(p.valid_mask.shape[1] for p in parts)

        def cat(tensors: list[torch.Tensor], axes: tuple[int, ...]) -> torch.Tensor:
            return torch.cat([_pad_to(t, T, axes) for t in tensors])

        def cat_layers(name: str, axes: tuple[int, ...]) -> list[torch.Tensor] | None:
            if getattr(parts[0], name) is None:
                return None
            return [cat(list(layer), axes) for layer in zip(*(getattr(p, name) for p in parts))]

        tokens = None
        if parts[0].tokens is not None:
            tokens = [row + [""] * (T - len(row)) for p in parts for row in p.tokens]
        return Capture(
            logits=torch.cat([p.logits for p in parts]),
            probs=torch.cat([p.probs for p in parts]),
            target=torch.cat([p.target for p in parts]),
            activations=cat_layers("activations", (1,)),
            attentions=cat_layers("attentions", (3,) if parts[0].attention_rows else (2, 3)),
            valid_mask=cat([p.valid_mask for p in parts], (1,)),
            token_mask=cat([p.token_mask for p in parts], (1,)),
            grad_activations=cat_layers("grad_activations", (1,)),
            grad_attentions=cat_layers("grad_attentions", (2, 3)),
            tokens=tokens,
            grid=parts[0].grid,
            attention_rows=parts[0].attention_rows,
        )


def _pad_to(t: torch.Tensor, size: int, axes: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad the given axes of `t` at their end up to `size`."""
    pad = [0] * (2 * t.dim())
    for ax in axes:
        pad[2 * (t.dim() - 1 - ax) + 1] = size - t.shape[ax]
    return F.pad(t, pad)

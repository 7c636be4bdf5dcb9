"""Which token(s) a classification head reads, and which model families attnxai supports.

The readout is the query row of the attention that stands for "what the head looks at": TCAV's
attention weighting, the `cls` Shapley game, the raw-attention baseline and rollout all read
the attention from it (docs/method.md §8). Three kinds:

- ``cls``: the first token ([CLS] of BERT-style encoders and of ViT);
- ``mean``: every real token alike (mean-pooled encoders, such as the MiniLM built-in);
- ``last``: the last non-padding token, which decoder-only sequence classifiers (GPT-2,
  Llama, Qwen, Mistral, Gemma, ...) read; their attention is causal, so the first token's row
  sees only itself.

The tables below are the one place that says which Hugging Face ``model_type`` reads how, and
which families attnxai refuses (with why).
"""

from __future__ import annotations

import torch

READOUTS = ("cls", "mean", "last")
#: Each readout in words (the model card).
READOUT_WORDS = {"cls": "the first token ([CLS])", "mean": "the mean over all tokens",
                 "last": "the last non-padding token"}

#: Decoder-only language models whose ``*ForSequenceClassification`` head reads the last
#: non-padding token.
LAST_TOKEN_MODEL_TYPES = frozenset({
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "qwen2", "qwen2_moe",
    "qwen3", "qwen3_moe", "gemma", "gemma2", "phi", "phi3", "falcon", "opt", "bloom", "mpt",
    "stablelm", "starcoder2", "persimmon", "biogpt", "ctrl", "openai-gpt", "jamba",
})

#: Families attnxai cannot audit, and why, said before any weight is loaded.
UNSUPPORTED_MODEL_TYPES = {
    "swin": "its attention is windowed (tokens attend within local windows, not across the "
            "whole image), so there is no token × token attention to weight by",
    "swinv2": "its attention is windowed (tokens attend within local windows, not across the "
              "whole image), so there is no token × token attention to weight by",
    "donut-swin": "its attention is windowed, so there is no token × token attention to "
                  "weight by",
    "convnext": "it is a convolutional network without attention",
    "convnextv2": "it is a convolutional network without attention",
    "resnet": "it is a convolutional network without attention",
    "regnet": "it is a convolutional network without attention",
    "efficientnet": "it is a convolutional network without attention",
    "mobilenet_v2": "it is a convolutional network without attention",
    "bit": "it is a convolutional network without attention",
    "poolformer": "it mixes tokens by pooling, without attention",
    "van": "it mixes tokens by convolutions, without attention",
}


def hf_text_readout(model_type: str) -> str:
    """The readout of a Hugging Face sequence classifier of ``model_type``."""
    return "last" if model_type in LAST_TOKEN_MODEL_TYPES else "cls"


def readout_weights(token_mask: torch.Tensor, readout: str) -> torch.Tensor:
    """[B, T] weights of the query rows the head reads (each row sums to 1): a one-hot first
    token (``cls``), every real token alike (``mean``) or a one-hot last real token (``last``,
    whichever side the padding is on)."""
    m = token_mask.to(torch.float32)
    if readout == "cls":
        out = torch.zeros_like(m)
        out[:, 0] = 1.0
        return out
    if readout == "mean":
        return m / m.sum(1, keepdim=True).clamp(min=1)
    if readout == "last":
        positions = torch.arange(m.shape[1], device=m.device).expand_as(m)
        last = torch.where(token_mask.bool(), positions, -1).max(1).values.clamp(min=0)
        return torch.nn.functional.one_hot(last, m.shape[1]).to(m.dtype)
    raise ValueError(f"readout must be one of {', '.join(READOUTS)}, not {readout!r}")


def readout_rows(matrix: torch.Tensor, token_mask: torch.Tensor, readout: str) -> torch.Tensor:
    """The readout's row of a [B, T, T] query × key matrix (attention, rollout): [B, T]."""
    q = readout_weights(token_mask, readout).to(matrix.dtype)
    return torch.einsum("bq,bqt->bt", q, matrix)

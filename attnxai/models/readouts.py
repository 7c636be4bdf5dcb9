"""Which token(s) a classification head reads, and which model families attnxai supports.

The readout is the query row (or the mix of rows) of the attention that stands for "what the
head looks at": TCAV's attention weighting, the `cls` Shapley game, the raw-attention baseline
and rollout all read the attention from it (docs/method.md §8). The kinds:

- ``cls``: the first token ([CLS] of BERT-style encoders and of ViT);
- ``mean``: every real token alike (mean-pooled encoders, such as the MiniLM built-in);
- ``last``: the last non-padding token, which decoder-only sequence classifiers (GPT-2,
  Llama, Qwen, Mistral, Gemma, ...) read; their attention is causal, so the first token's row
  sees only itself;
- ``patches``: the mean of the patch tokens (BEiT's pooler, timm's ``avg`` pooling);
- ``cls+patches``: [CLS] and the patch mean, half each (DINOv2's head reads both, concatenated);
- ``cls+dist``: [CLS] and the distillation token, half each (DeiT-distilled averages two heads).

The proof that a readout is right: the logit's gradient at the last block reaches exactly the
readout's tokens (tests/test_model_families.py). The tables below are the one place that says
which Hugging Face ``model_type`` reads how, and which families attnxai refuses (with why).
"""

from __future__ import annotations

from typing import Any

import torch

READOUTS = ("cls", "mean", "last", "patches", "cls+patches", "cls+dist")
#: Readouts that read one or two query rows: a capture for TCAV can record just those rows.
ROW_READOUTS = frozenset({"cls", "last", "cls+dist"})
#: Each readout in words (the model card).
READOUT_WORDS = {"cls": "the first token ([CLS])", "mean": "the mean over all tokens",
                 "last": "the last non-padding token", "patches": "the mean of the patch tokens",
                 "cls+patches": "[CLS] and the mean of the patch tokens",
                 "cls+dist": "[CLS] and the distillation token"}
#: Hugging Face image model types whose head reads the mean of the patch tokens (BEiT and
#: Data2Vec-vision when their config says ``use_mean_pooling``; the CLIP and SigLIP image
#: classifiers always), and those that read [CLS] beside the patch mean.
PATCH_MEAN_MODEL_TYPES = frozenset({"beit", "data2vec-vision", "clip", "siglip"})
CLS_AND_PATCHES_MODEL_TYPES = frozenset({"dinov2", "dinov2_with_registers"})
#: Image model types without a [CLS] token: every token is a patch.
NO_CLS_MODEL_TYPES = frozenset({"siglip"})

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


def hf_text_readout(config: Any) -> str:
    """The readout of a Hugging Face sequence classifier with this config: decoder-only
    families read their last token; a ``classifier_pooling`` of ``mean`` (ModernBERT) reads
    every token; the rest read [CLS]."""
    if config.model_type in LAST_TOKEN_MODEL_TYPES:
        return "last"
    return "mean" if getattr(config, "classifier_pooling", "cls") == "mean" else "cls"


def vision_config(config: Any) -> Any:
    """The config that describes the image encoder: CLIP's and SigLIP's nest it."""
    return getattr(config, "vision_config", None) or config


def num_prefix_tokens(model: torch.nn.Module) -> int:
    """Tokens before the patches: [CLS] (none for SigLIP), DeiT-distilled's distillation
    token, DINOv2's register tokens."""
    cfg = model.config
    if cfg.model_type in NO_CLS_MODEL_TYPES:
        return 0
    registers = int(getattr(vision_config(cfg), "num_register_tokens", 0) or 0)
    return 1 + (hf_image_readout(model) == "cls+dist") + registers


def hf_image_readout(model: torch.nn.Module) -> str:
    """The readout of a Hugging Face ViT-family image classifier."""
    cfg = model.config
    if "WithTeacher" in type(model).__name__:  # DeiT-distilled: two heads, averaged
        return "cls+dist"
    if cfg.model_type in PATCH_MEAN_MODEL_TYPES and getattr(cfg, "use_mean_pooling", True):
        return "patches"
    if cfg.model_type in CLS_AND_PATCHES_MODEL_TYPES:
        return "cls+patches"
    return "cls"


def readout_weights(token_mask: torch.Tensor, readout: str,
                    valid_mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] weights of the query rows the head reads (each row sums to 1): a one-hot first
    token (``cls``), every real token alike (``mean``), a one-hot last real token (``last``,
    whichever side the padding is on), the players (``valid_mask``: patch tokens) alike
    (``patches``), or half-and-half mixes (``cls+patches``, ``cls+dist``)."""
    m = token_mask.to(torch.float32)
    first = torch.zeros_like(m)
    first[:, 0] = 1.0
    if readout == "cls":
        return first
    if readout == "mean":
        return m / m.sum(1, keepdim=True).clamp(min=1)
    if readout == "last":
        positions = torch.arange(m.shape[1], device=m.device).expand_as(m)
        last = torch.where(token_mask.bool(), positions, -1).max(1).values.clamp(min=0)
        return torch.nn.functional.one_hot(last, m.shape[1]).to(m.dtype)
    if readout == "cls+dist":
        second = torch.zeros_like(m)
        second[:, 1] = 1.0
        return (first + second) / 2
    if readout in ("patches", "cls+patches"):
        if valid_mask is None:
            raise ValueError(f"the {readout!r} readout needs the mask of the patch tokens")
        v = valid_mask.to(torch.float32)
        patches = v / v.sum(1, keepdim=True).clamp(min=1)
        return patches if readout == "patches" else (first + patches) / 2
    raise ValueError(f"readout must be one of {', '.join(READOUTS)}, not {readout!r}")


def read_rows(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows a readout's ``weights`` [B, T] read, as (weights, positions), each [B, R]: R
    the most rows any input reads (one or two for :data:`ROW_READOUTS`)."""
    count = int((weights > 0).sum(1).max())
    return weights.topk(count, dim=1)


def readout_rows(matrix: torch.Tensor, token_mask: torch.Tensor, readout: str,
                 valid_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The readout's row of a [B, T, T] query × key matrix (attention, rollout): [B, T]."""
    q = readout_weights(token_mask, readout, valid_mask).to(matrix.dtype)
    return torch.einsum("bq,bqt->bt", q, matrix)

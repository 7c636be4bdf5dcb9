"""Vision adapters: Hugging Face ViT-family classifiers and timm VisionTransformers."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from attnxai.errors import ModelLoadError
from attnxai.models.base import Batch, ModelAdapter, Recorded
from attnxai.models.readouts import (READOUT_WORDS, hf_image_readout, num_prefix_tokens,
                                     vision_config)


class ImageAdapter(ModelAdapter):
    """Shared image handling: inputs are PIL images or paths; tokens are prefix tokens + patches."""

    modality = "image"
    num_prefix_tokens: int
    grid: tuple[int, int]

    @abstractmethod
    def pixel_values(self, images: list[Any]) -> torch.Tensor:
        """Preprocess RGB PIL images into a [B, 3, H, W] tensor."""

    def prepare(self, inputs: Sequence[Any]) -> Batch:
        from attnxai.io.datasets import load_image

        images = [load_image(x) for x in inputs]
        # In the model's precision (bfloat16 or float16 when it was loaded so).
        pixels = self.pixel_values(images).to(self.device, next(self.model.parameters()).dtype)
        B = len(images)
        T = self.num_prefix_tokens + self.grid[0] * self.grid[1]
        token_mask = torch.ones(B, T, dtype=torch.bool)
        valid = token_mask.clone()
        valid[:, : self.num_prefix_tokens] = False  # [CLS] / register tokens are not players
        return Batch(model_inputs={"pixel_values": pixels}, valid_mask=valid,
                     token_mask=token_mask, grid=self.grid)


class HFImageClassifier(ImageAdapter):
    """An ``AutoModelForImageClassification`` of the ViT family (prefix tokens + patch tokens),
    read as its head reads (:func:`attnxai.models.readouts.hf_image_readout`)."""

    def __init__(self, model: torch.nn.Module, processor: Any, spec: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.model = model.to(self.device).eval()
        self.processor = processor
        cfg = model.config
        vision = vision_config(cfg)
        self.labels = [str(cfg.id2label[i]) for i in range(cfg.num_labels)]
        self.num_layers = vision.num_hidden_layers
        self.num_heads = vision.num_attention_heads
        size = vision.image_size if isinstance(vision.image_size, int) else vision.image_size[0]
        self.grid = (size // _patch(vision), size // _patch(vision))
        self.pooling = hf_image_readout(model)
        self.num_prefix_tokens = num_prefix_tokens(model)
        self.card = {"name": spec, "kind": "huggingface", "architecture": type(model).__name__,
                     "model_type": cfg.model_type, "readout": READOUT_WORDS[self.pooling]}

    def pixel_values(self, images: list[Any]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"]

    @torch.no_grad()
    def check_token_attention(self) -> None:
        """ModelLoadError unless one forward pass of a blank image gives, per block, attention
        over all tokens ([B, H, T, T]) and outputs for every token, T = prefix + patches: the
        one structure every attention score here reads (windowed or hierarchical attention
        is refused, whatever the family is called)."""
        from PIL import Image

        side = self.grid[0] * _patch(vision_config(self.model.config))
        batch = self.prepare([Image.new("RGB", (side, side))])
        try:
            recorded = self.forward_recording(batch)
        except Exception as exc:  # noqa: BLE001 - any failure means the layout is not ViT's
            raise ModelLoadError(f"{self.spec} could not be run as a ViT-family model "
                                 f"({type(exc).__name__}: {str(exc)[:200]}).") from exc
        T = batch.token_mask.shape[1]
        shapes = {tuple(a.shape[-2:]) for a in recorded.attentions}
        tokens = {h.shape[1] for h in recorded.activations}
        if (len(recorded.attentions) != self.num_layers or shapes != {(T, T)}
                or tokens != {T}):
            raise ModelLoadError(
                f"{self.spec} is a {self.model.config.model_type!r} model whose attention is "
                f"not over all its {T} tokens ([CLS] and {self.grid[0]}x{self.grid[1]} patches) "
                f"in every block (attention shapes {sorted(shapes)}), which attnxai cannot "
                "audit.")

    def forward_logits(self, batch: Batch) -> torch.Tensor:
        return self.model(**batch.model_inputs).logits

    def forward_recording(self, batch: Batch) -> Recorded:
        out = self.model(**batch.model_inputs, output_hidden_states=True, output_attentions=True)
        return Recorded(out.logits, list(out.hidden_states[1:]), list(out.attentions))


class TimmViT(ImageAdapter):
    """A timm ``VisionTransformer``; fused attention is switched off so probabilities exist.

    Block outputs and attention probabilities are recorded by forward hooks on
    ``blocks[i]`` and ``blocks[i].attn.attn_drop`` (whose output is what multiplies V).
    """

    def __init__(self, model: torch.nn.Module, spec: str,
                 transform: Callable[[list[Any]], torch.Tensor] | None = None,
                 labels: Sequence[str] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.spec = spec
        self.model = model.to(self.device).eval()
        blocks = list(model.blocks)
        for blk in blocks:
            blk.attn.fused_attn = False
        self.blocks = blocks
        self.num_layers = len(blocks)
        self.num_heads = blocks[0].attn.num_heads
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 1))
        self.grid = tuple(model.patch_embed.grid_size)
        # timm's average pooling leaves the prefix tokens out: the patches' mean.
        self.pooling = ("cls" if getattr(model, "global_pool", "token") in ("token", "")
                        else "patches")
        self.labels = list(labels) if labels else _timm_labels(model)
        if len(self.labels) != model.num_classes:
            raise ModelLoadError(f"{len(self.labels)} labels given for a model with "
                                 f"{model.num_classes} classes.")
        self._transform = transform or _timm_transform(model)
        self.card = {"name": spec, "kind": "timm", "architecture": type(model).__name__,
                     "readout": READOUT_WORDS[self.pooling]}

    def block_modules(self) -> list[torch.nn.Module]:
        return self.blocks

    def pixel_values(self, images: list[Any]) -> torch.Tensor:
        return self._transform(images)

    def forward_logits(self, batch: Batch) -> torch.Tensor:
        return self.model(batch.model_inputs["pixel_values"])

    def forward_recording(self, batch: Batch) -> Recorded:
        acts: list[torch.Tensor] = []
        attns: list[torch.Tensor] = []
        handles = []
        for blk in self.blocks:
            handles.append(blk.register_forward_hook(lambda m, i, o: acts.append(o)))
            handles.append(blk.attn.attn_drop.register_forward_hook(lambda m, i, o: attns.append(o)))
        try:
            logits = self.model(batch.model_inputs["pixel_values"])
        finally:
            for h in handles:
                h.remove()
        return Recorded(logits, acts, attns)


def _patch(cfg: Any) -> int:
    return cfg.patch_size if isinstance(cfg.patch_size, int) else cfg.patch_size[0]


def _timm_transform(model: torch.nn.Module) -> Callable[[list[Any]], torch.Tensor]:
    import timm.data

    cfg = timm.data.resolve_model_data_config(model)
    # The pretrained config may name another resolution than the one the model was built with.
    size = tuple(model.patch_embed.img_size)
    if tuple(cfg["input_size"][1:]) != size:
        cfg["input_size"], cfg["crop_pct"] = (3, *size), 1.0
    tf = timm.data.create_transform(**cfg, is_training=False)
    return lambda images: torch.stack([tf(im) for im in images])


def _timm_labels(model: torch.nn.Module) -> list[str]:
    """ImageNet class names when timm knows the model's label set, else class_0, class_1, ..."""
    import timm.data

    subset = timm.data.infer_imagenet_subset(model)
    if subset:
        return list(timm.data.ImageNetInfo(subset).label_descriptions(as_dict=False))
    return [f"class_{i}" for i in range(model.num_classes)]

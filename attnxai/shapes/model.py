"""The ``builtin:shapes-vit`` model: a small plain timm VisionTransformer on 64x64 scenes.

The model is the stock :class:`timm.models.vision_transformer.VisionTransformer`, so the
generic timm adapter handles it (``model.blocks[i]``, ``blk.attn.attn_drop``). Its weights
and a card describing training and the planted shortcut ship in ``attnxai/resources/shapes_vit``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from timm.models.vision_transformer import VisionTransformer

from attnxai.errors import ModelLoadError
from attnxai.resources import SHAPES_VIT_DIR
from attnxai.shapes.render import IMAGE_SIZE, SHAPES

ASSET_DIR = SHAPES_VIT_DIR
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"

# Per-channel statistics of the unbiased scene distribution would be marginally better, but
# fixed 0.5/0.5 keeps preprocessing obvious and identical for scenes and swatches.
MEAN: tuple[float, float, float] = (0.5, 0.5, 0.5)
STD: tuple[float, float, float] = (0.5, 0.5, 0.5)

DEFAULT_ARCH: dict[str, Any] = {
    "img_size": IMAGE_SIZE,
    "patch_size": 8,
    "embed_dim": 64,
    "depth": 6,
    "num_heads": 4,
    "mlp_ratio": 2.0,
    "num_classes": len(SHAPES),
    "global_pool": "token",
    "class_token": True,
}


def build_model(arch: dict[str, Any]) -> VisionTransformer:
    """Build an untrained plain timm ViT from an architecture dict (keys of DEFAULT_ARCH)."""
    return VisionTransformer(
        img_size=int(arch["img_size"]),
        patch_size=int(arch["patch_size"]),
        in_chans=3,
        num_classes=int(arch["num_classes"]),
        global_pool=str(arch["global_pool"]),
        embed_dim=int(arch["embed_dim"]),
        depth=int(arch["depth"]),
        num_heads=int(arch["num_heads"]),
        mlp_ratio=float(arch["mlp_ratio"]),
        class_token=bool(arch["class_token"]),
        qkv_bias=True,
    )


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """Normalised float tensor [B, 3, 64, 64] from a uint8 array [B, 64, 64, 3]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess(images: list[Image.Image]) -> torch.Tensor:
    """Batch PIL images for the model: RGB, resized to 64x64 if needed, normalised."""
    arrays = []
    for image in images:
        image = image.convert("RGB")
        if image.size != (IMAGE_SIZE, IMAGE_SIZE):
            image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
        arrays.append(np.asarray(image, dtype=np.uint8))
    if not arrays:
        return torch.empty(0, 3, IMAGE_SIZE, IMAGE_SIZE)
    return images_to_tensor(np.stack(arrays))


def load_builtin(asset_dir: Path = ASSET_DIR) -> tuple[VisionTransformer, dict[str, Any]]:
    """Load the shipped shapes-vit (eval mode, CPU) and its card."""
    weights, card_path = asset_dir / WEIGHTS_FILE, asset_dir / CARD_FILE
    if not weights.is_file() or not card_path.is_file():
        raise ModelLoadError(
            f"The built-in shapes-vit assets are missing from {asset_dir}; "
            "reinstall attnxai or rebuild them with `python -m attnxai.shapes.train --out "
            f"{asset_dir}`."
        )
    card = json.loads(card_path.read_text(encoding="utf-8"))
    model = build_model(card["architecture"])
    model.load_state_dict(load_file(str(weights), device="cpu"))
    model.eval()
    return model, card

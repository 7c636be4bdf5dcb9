"""Pictures for the page: patch-value overlays and thumbnails (drawing only, no science)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from attnxai.io.datasets import load_image


def overlay(image: Any, grid: Any, size: int = 256, alpha: float = 0.6) -> Image.Image:
    """``grid`` [rows, cols] of values painted over the image: red positive, blue negative,
    opacity by |value| relative to the largest one."""
    img = load_image(image).resize((size, size), Image.BILINEAR)
    g = np.asarray(grid, dtype=np.float32)
    m = float(np.abs(g).max()) or 1.0
    g = g / m
    rgba = np.zeros((*g.shape, 4), dtype=np.float32)
    rgba[..., 0] = np.where(g > 0, 0.80, 0.15)
    rgba[..., 1] = np.where(g > 0, 0.15, 0.35)
    rgba[..., 2] = np.where(g > 0, 0.15, 0.80)
    rgba[..., 3] = np.abs(g) * alpha
    heat = Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").resize((size, size),
                                                                          Image.NEAREST)
    out = Image.alpha_composite(img.convert("RGBA"), heat)
    return out.convert("RGB")


def thumbnail(image: Any, size: int = 96) -> Image.Image:
    img = load_image(image)
    img.thumbnail((size, size))
    return img

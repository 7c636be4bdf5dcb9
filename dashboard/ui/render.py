"""Pictures for the page: patch-value overlays and thumbnails (drawing only, no science)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from attnxai.io.datasets import load_image


#: The overlays' colours in words, for the caption beside them.
OVERLAY_LEGEND = ("Red: the patch raises the value (pushes towards the class); blue: it lowers "
                  "it; the stronger the colour, the larger the value against the image's largest.")


def overlay(image: Any, grid: Any, size: int = 256, alpha: float = 0.75) -> Image.Image:
    """``grid`` [rows, cols] of values painted over the image: red positive, blue negative,
    opacity by the square root of |value| relative to the largest one (linear opacity left
    all but the strongest patches too faint to see)."""
    img = load_image(image).resize((size, size), Image.BILINEAR)
    g = np.asarray(grid, dtype=np.float32)
    m = float(np.abs(g).max()) or 1.0
    g = g / m
    rgba = np.zeros((*g.shape, 4), dtype=np.float32)
    rgba[..., 0] = np.where(g > 0, 0.80, 0.15)
    rgba[..., 1] = np.where(g > 0, 0.15, 0.35)
    rgba[..., 2] = np.where(g > 0, 0.15, 0.80)
    rgba[..., 3] = np.sqrt(np.abs(g)) * alpha
    heat = Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").resize((size, size),
                                                                          Image.NEAREST)
    out = Image.alpha_composite(img.convert("RGBA"), heat)
    return out.convert("RGB")


def thumbnail(image: Any, size: int = 96) -> Image.Image:
    img = load_image(image)
    img.thumbnail((size, size))
    return img

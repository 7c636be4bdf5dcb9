"""The content hash of one example, as the activation cache and the store key it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from PIL import Image


def example_hash(item: Any) -> str:
    """SHA-256 (hex) of one example's content: text, image file bytes or image pixels."""
    if isinstance(item, str):
        data = b"text:" + item.encode("utf-8")
    elif isinstance(item, Path):
        data = b"image-file:" + item.read_bytes()
    elif isinstance(item, Image.Image):
        data = f"image-pixels:{item.mode}:{item.size}:".encode() + item.tobytes()
    else:
        raise TypeError(f"cannot hash an example of type {type(item).__name__}")
    return hashlib.sha256(data).hexdigest()

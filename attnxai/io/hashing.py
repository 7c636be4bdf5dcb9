"""One content hash for everything attnxai stores: examples, datasets and concept sets.

An example's digest depends only on what the model sees: the UTF-8 text, or the decoded RGB
pixels of an image (so a PNG file and the same picture held in memory share one digest, and
re-encoding or renaming a file changes nothing). Collections hash the ordered digests of their
members with length prefixes, so ``["ab", "c"]`` and ``["a", "bc"]`` differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image


def example_bytes(item: Any) -> bytes:
    """The canonical bytes of one example (text, image path or PIL image)."""
    from attnxai.io.datasets import load_image

    if isinstance(item, str):
        return b"text:" + item.encode("utf-8")
    if isinstance(item, (Path, Image.Image)):
        img = load_image(item)
        return f"image:RGB:{img.size[0]}x{img.size[1]}:".encode() + img.tobytes()
    raise TypeError(f"cannot hash an example of type {type(item).__name__}")


def example_hash(item: Any) -> str:
    """SHA-256 (hex) of one example's content."""
    return hashlib.sha256(example_bytes(item)).hexdigest()


def combined_hash(header: str, parts: Iterable[bytes | str]) -> str:
    """SHA-256 (hex) of a header and an ordered sequence of parts, each length-prefixed."""
    digest = hashlib.sha256(header.encode("utf-8"))
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()

"""Token activations of concept and random-pool examples, cached in the audit store.

The cache key is (model hash, example hash, layer). The model hash covers the weights, the
adapter type, its pooling and spec, and a local model folder's small files (config,
tokenizer); the example hash covers the example's content (a text's characters, an image's
file bytes or pixels), not where it was loaded from. So a second audit with the same
concepts and model reuses the activations, and any change to either misses the cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attnxai.io.hashing import example_hash
from attnxai.models.base import ModelAdapter
from attnxai.tcav.cav import TokenTable
from attnxai.tcav.run import FractionProgress, example_tables

if TYPE_CHECKING:
    from attnxai.audit.store import Store

# Files of a local model folder that change how inputs become activations, besides weights.
_FOLDER_SUFFIXES = (".json", ".txt", ".model")
_MAX_FOLDER_FILE_BYTES = 32 * 1024 * 1024


def model_hash(adapter: ModelAdapter) -> str:
    """SHA-256 (hex) over the adapter type, pooling, spec, every parameter and buffer, and the
    config/tokenizer files of a local model folder."""
    digest = hashlib.sha256(f"{type(adapter).__name__}:{adapter.pooling}:{adapter.spec}".encode())
    for name, tensor in adapter.model.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    folder = Path(adapter.spec)
    if folder.is_dir():
        for f in sorted(folder.iterdir()):
            if (f.is_file() and f.suffix in _FOLDER_SUFFIXES
                    and f.stat().st_size <= _MAX_FOLDER_FILE_BYTES):
                digest.update(f.name.encode() + f.read_bytes())
    return digest.hexdigest()


class CachedActivations:
    """An activation source for ``run_tcav`` that reads the store's cache first, computes only
    the missing examples (one batched forward pass) and adds them to the cache.

    Tables are also kept in memory, so the targets and datasets of one audit share them.
    ``cached`` / ``computed`` count the examples served from the cache / computed. ``compute``
    computes the missing ones (``(items, layers, batch_size, progress) -> tables``; default:
    :func:`example_tables` on ``adapter``; an engine passes its own).
    """

    def __init__(self, store: Store | None, adapter: ModelAdapter, model_hash: str,
                 batch_size: int | None = None, progress: FractionProgress | None = None,
                 compute: Callable[..., list[TokenTable]] | None = None) -> None:
        self.store, self.adapter, self.model_hash = store, adapter, model_hash
        self.batch_size, self.progress = batch_size, progress
        self.compute = compute or (lambda *a: example_tables(adapter, *a))
        self.cached = self.computed = 0
        self._memo: dict[tuple[tuple[str, ...], tuple[int, ...]], list[TokenTable]] = {}

    def __call__(self, items: list[Any], layers: list[int]) -> list[TokenTable]:
        hashes = [example_hash(x) for x in items]
        key = (tuple(hashes), tuple(layers))
        if key not in self._memo:
            self._memo[key] = self._tables(items, hashes, layers)
        return self._memo[key]

    def _tables(self, items: list[Any], hashes: list[str], layers: list[int]) -> list[TokenTable]:
        found = self.store.cached_activations(self.model_hash, hashes, layers) if self.store else {}
        missing = sorted({i for i, h in enumerate(hashes) if any((h, l) not in found for l in layers)})
        self.cached += len(set(hashes)) - len({hashes[i] for i in missing})
        if missing:
            fresh = self.compute([items[i] for i in missing], layers, self.batch_size,
                                 self.progress)
            new: dict[tuple[str, int], torch.Tensor] = {}
            for j, layer in enumerate(layers):
                for k, rows in enumerate(_split(fresh[j], len(missing))):
                    new[(hashes[missing[k]], layer)] = rows
            self.computed += len({hashes[i] for i in missing})
            if self.store:
                self.store.cache_activations(self.model_hash, new)
            found.update(new)
        return [_assemble([found[(h, layer)] for h in hashes]) for layer in layers]


def _split(table: TokenTable, n: int) -> list[torch.Tensor]:
    """The rows of each of the n examples of a table (rows are grouped by example, in order)."""
    counts = torch.bincount(table.example, minlength=n).tolist()
    return list(torch.split(table.rows, counts))


def _assemble(per_example: Sequence[torch.Tensor]) -> TokenTable:
    counts = torch.tensor([len(r) for r in per_example])
    return TokenTable(rows=torch.cat(list(per_example)),
                      example=torch.repeat_interleave(torch.arange(len(per_example)), counts))

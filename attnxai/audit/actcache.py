"""Token activations of concept and random-pool examples, cached in the audit store.

The cache key is (model hash, example hash, layer). The model hash covers the weights, the
adapter type, its pooling and spec, and a local model folder's small files (config,
tokenizer); the example hash covers the example's content (a text's characters, an image's
file bytes or pixels), not where it was loaded from. So a second audit with the same
concepts and model reuses the activations, and any change to either misses the cache.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from attnxai.audit.store import CACHE_MAX_BYTES_ENV, Store
from attnxai.io.hashing import example_hash
from attnxai.models.base import ModelAdapter
from attnxai.tcav.cav import TokenTable
from attnxai.tcav.run import FractionProgress, example_tables
from attnxai.tcav.spill import TableWriter

log = logging.getLogger(__name__)

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

    Tables go through memory one layer at a time and are kept on disk
    (:class:`attnxai.tcav.spill.LayerTables`), so the targets and datasets of one audit share
    them. ``cached`` / ``computed`` count the examples served from the cache / computed.
    ``compute`` computes the missing ones (``(items, layers, batch_size, progress) -> tables``;
    default: :func:`example_tables` on ``adapter``; an engine passes its own). Activations
    that would not fit in the cache's cap together are not cached (evicting this audit's own
    first layers to store its last would help no later audit); ``notes`` says so.
    """

    def __init__(self, store: Store | None, adapter: ModelAdapter, model_hash: str,
                 batch_size: int | None = None, progress: FractionProgress | None = None,
                 compute: Callable[..., Sequence[TokenTable]] | None = None) -> None:
        self.store, self.adapter, self.model_hash = store, adapter, model_hash
        self.batch_size, self.progress = batch_size, progress
        self.compute = compute or (lambda *a: example_tables(adapter, *a))
        self.cached = self.computed = 0
        self.notes: list[str] = []
        self._memo: dict[tuple[tuple[str, ...], tuple[int, ...]], Sequence[TokenTable]] = {}

    def __call__(self, items: list[Any], layers: list[int]) -> Sequence[TokenTable]:
        hashes = [example_hash(x) for x in items]
        key = (tuple(hashes), tuple(layers))
        if key not in self._memo:
            self._memo[key] = self._tables(items, hashes, layers)
        return self._memo[key]

    def _tables(self, items: list[Any], hashes: list[str], layers: list[int]
                ) -> Sequence[TokenTable]:
        store = self.store
        if store is None:  # nothing to read or to add: the computed tables are the answer
            self.computed += len(set(hashes))
            return self.compute(items, layers, self.batch_size, self.progress)
        have = store.cached_keys(self.model_hash, hashes, layers)
        missing = [i for i, h in enumerate(hashes) if any((h, l) not in have for l in layers)]
        self.cached += len(set(hashes)) - len({hashes[i] for i in missing})
        fresh = (self.compute([items[i] for i in missing], layers, self.batch_size, self.progress)
                 if missing else None)
        self.computed += len({hashes[i] for i in missing})
        to_cache = fresh is not None and self._fits(store, fresh, len(layers))
        slot = {i: k for k, i in enumerate(missing)}
        stored = [h for i, h in enumerate(hashes) if i not in slot]
        writer = TableWriter(len(layers))
        counts: list[int] = []
        for j, layer in enumerate(layers):
            found = store.cached_activations(self.model_hash, stored, [layer]) if stored else {}
            new = _split(fresh[j], len(missing)) if fresh is not None else []
            if to_cache:
                store.cache_activations(self.model_hash, {
                    (hashes[i], layer): new[k] for i, k in slot.items()})
            per_example = [new[slot[i]] if i in slot else found[(h, layer)]
                           for i, h in enumerate(hashes)]
            counts = [len(r) for r in per_example]
            writer.write(j, torch.cat(per_example) if per_example else torch.empty(0, 0))
        return writer.finish(torch.repeat_interleave(torch.arange(len(counts)),
                                                     torch.tensor(counts, dtype=torch.long)))

    def _fits(self, store: Store, fresh: Sequence[TokenTable], n_layers: int) -> bool:
        """Whether the cache's cap holds the fresh activations at every layer (else a note)."""
        first = fresh[0].rows
        size = first.shape[0] * first.shape[1] * first.element_size() * n_layers
        cap = store.cache_max_bytes
        if size <= cap:
            return True
        self.notes.append(
            f"The examples' activations ({size / 1e9:.1f} GB at {n_layers} layers) exceed the "
            f"activation cache's cap ({cap / 1e9:.1f} GB), so they were not cached; set "
            f"{CACHE_MAX_BYTES_ENV} to more bytes to reuse them in later audits.")
        log.warning(self.notes[-1])
        return False


def _split(table: TokenTable, n: int) -> list[torch.Tensor]:
    """The rows of each of the n examples of a table (rows are grouped by example, in order)."""
    counts = torch.bincount(table.example, minlength=n).tolist()
    return list(torch.split(table.rows, counts))

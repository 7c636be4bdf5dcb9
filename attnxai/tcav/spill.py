"""Examples' token activations on disk, one layer in memory at a time.

The activations of an audit's concept and random examples grow with layers x examples x
tokens x width: 2.9 GB for 400 images through ViT-B/16, far more for larger models. They are
written as they are captured, one float32 file per layer, and a layer is mapped back in only
while its CAVs are trained (:class:`LayerTables`), so the memory an audit needs for them is one
layer's rows, whatever the number of layers.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from attnxai.tcav.cav import TokenTable

#: Spilled tables go to a fresh folder of this prefix in the temporary directory ($TMPDIR).
PREFIX = "attnxai-activations-"


class LayerTables(Sequence[TokenTable]):
    """Token tables of the same examples at several layers; ``tables[j]`` maps layer j's file
    in, and the mapping is dropped with the table."""

    def __init__(self, folder: Path, count: int, rows: int, dim: int, example: torch.Tensor,
                 keep_alive: object) -> None:
        self.folder, self.count, self.rows, self.dim = folder, count, rows, dim
        self.example = example
        # The folder's owner: the files go with these tables (a layer already mapped in
        # stays readable until its table is dropped).
        self._keep_alive = keep_alive

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, j: int) -> TokenTable:  # type: ignore[override]
        if not -self.count <= j < self.count:
            raise IndexError(j)
        j %= self.count
        if self.rows == 0:
            return TokenTable(rows=torch.empty(0, self.dim), example=self.example)
        # Copy-on-write: pages are read from the file as used, and a write (none is expected)
        # would change this table only.
        data = np.memmap(self.folder / f"{j}.f32", dtype=np.float32, mode="c",
                         shape=(self.rows, self.dim))
        return TokenTable(rows=torch.from_numpy(data), example=self.example)

    def __iter__(self) -> Iterator[TokenTable]:
        return (self[j] for j in range(self.count))


class TableWriter:
    """Writes token rows per layer, in example order, straight into files on disk: a batch of
    rows at every layer at once (:meth:`add`), or a layer at a time (:meth:`write`)."""

    def __init__(self, count: int) -> None:
        self._holder = tempfile.TemporaryDirectory(prefix=PREFIX)
        self.folder, self.count = Path(self._holder.name), count
        self.files = [open(self.folder / f"{j}.f32", "wb") for j in range(count)]  # noqa: SIM115
        self.written = [0] * count
        self.owners: list[torch.Tensor] = []
        self.dim = 0

    def write(self, j: int, rows: torch.Tensor) -> None:
        """Append ``rows`` [n, d] to layer j's table."""
        self.files[j].write(rows.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        self.written[j] += len(rows)
        self.dim = int(rows.shape[-1])

    def add(self, per_layer: Sequence[torch.Tensor], owners: torch.Tensor) -> None:
        """Rows ``[n, d]`` of the same ``n`` tokens at each layer, owned by examples ``owners``."""
        for j, rows in enumerate(per_layer):
            self.write(j, rows)
        self.owners.append(owners.to(torch.long))

    def finish(self, example: torch.Tensor | None = None) -> LayerTables:
        """The tables written (the writer is closed); ``example``: each row's example, when
        the rows were written a layer at a time."""
        for f in self.files:
            f.close()
        if example is None:
            example = torch.cat(self.owners) if self.owners else torch.empty(0, dtype=torch.long)
        if any(n != len(example) for n in self.written):
            raise ValueError(f"layers hold {self.written} rows for {len(example)} owners")
        return LayerTables(self.folder, self.count, len(example), self.dim, example, self._holder)


class MappedTables(Sequence[TokenTable]):
    """``fn`` applied to each table of ``source`` when it is asked for (so a per-layer edit of
    spilled tables does not bring every layer into memory at once)."""

    def __init__(self, source: Sequence[TokenTable], fn: Callable[[TokenTable], TokenTable]
                 ) -> None:
        self.source, self.fn = source, fn

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, j: int) -> TokenTable:  # type: ignore[override]
        return self.fn(self.source[j])


"""The local engine: both passes in this process, batch by batch, on the adapter's device."""

from __future__ import annotations

from typing import Any

from attnxai.audit.engines import ExampleTables, ModelRef
from attnxai.models.base import ModelAdapter
from attnxai.tcav.cav import TokenTable
from attnxai.tcav.run import FractionProgress, Scorer, example_tables
from attnxai.tcav.stream import stream_stats


class LocalEngine:
    """Runs the passes on the driver's own adapter."""

    name = "local"

    def __init__(self) -> None:
        self.adapter: ModelAdapter | None = None

    def bind(self, adapter: ModelAdapter, model: ModelRef) -> None:
        self.adapter = adapter

    def example_tables(self) -> ExampleTables:
        def tables(items: list[Any], layers: list[int], batch_size: int | None,
                   progress: FractionProgress | None) -> list[TokenTable]:
            return example_tables(self.adapter, items, layers, batch_size, progress)
        return tables

    def scorer(self) -> Scorer:
        return lambda **kw: stream_stats(self.adapter, **kw)

    def close(self) -> None:
        self.adapter = None

"""Where an audit's two heavy passes run: in this process (``local``) or on Ray (``ray``).

The passes are the concept and random-pool examples' activations (no gradients) and the target
inputs' capture with gradients plus S(x) for every layer x CAV, folded into sufficient
statistics (:mod:`attnxai.tcav.stream`). Everything else — prediction, CAV training, the
tests, the causal effects, the store — runs in the calling process, so every engine gives the
same results for the same seed. An engine is bound to the audit's model with
:meth:`Engine.bind` before use and released with :meth:`Engine.close`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from attnxai.models.base import ModelAdapter
from attnxai.tcav.cav import TokenTable
from attnxai.tcav.run import FractionProgress, Scorer


@dataclass(frozen=True)
class ModelRef:
    """What a worker needs to load the audit's model itself: the spec and how it was loaded
    (never the weights). The spec must resolve on every node: a built-in, a Hugging Face id
    in each node's cache, or a path present on each node."""

    spec: str
    batch_size: int
    labels: dict[str, Any] | None = None
    trust_remote_code: bool = False
    dtype: str = "float32"

    def load(self, device: str | None = None) -> ModelAdapter:
        """The adapter, loaded on this machine."""
        from attnxai.models import load_model

        return load_model(self.spec, device=device, batch_size=self.batch_size,
                          labels=self.labels, trust_remote_code=self.trust_remote_code,
                          dtype=self.dtype)


#: Computes examples' token activations, as :func:`attnxai.tcav.run.example_tables` does
#: without its adapter: ``(items, layers, batch_size, progress) -> one table per layer``.
ExampleTables = Callable[[list[Any], list[int], int | None, FractionProgress | None],
                         list[TokenTable]]


class Engine(Protocol):
    """Runs the example pass and the target pass of an audit."""

    name: str

    def bind(self, adapter: ModelAdapter, model: ModelRef) -> None:
        """Use ``adapter`` (the driver's) and ``model`` (how workers load it)."""

    def example_tables(self) -> ExampleTables:
        """The examples' activations, as :func:`attnxai.tcav.run.example_tables` gives them."""

    def scorer(self) -> Scorer:
        """The target pass, as :func:`attnxai.tcav.stream.stream_stats` gives it."""

    def close(self) -> None:
        """Release what the engine holds (workers, a cluster it started)."""


def make_engine(name: str, address: str | None = None, num_gpus: float = 0.0,
                workers: int | None = None) -> Engine:
    """The engine ``name`` (``local`` or ``ray``); ``address``, ``num_gpus`` (per worker) and
    ``workers`` are Ray's."""
    if name == "local":
        from attnxai.audit.engines.local import LocalEngine

        return LocalEngine()
    if name == "ray":
        from attnxai.audit.engines.ray import RayEngine

        return RayEngine(address=address, num_gpus=num_gpus, workers=workers)
    raise ValueError(f"engine must be 'local' or 'ray', not {name!r}")

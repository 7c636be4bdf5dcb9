"""The Ray engine: both passes sharded over Ray Data actors that each hold the model.

Each pass is a Ray dataset of chunks — one chunk per batch the local engine would capture, so
every capture sees the same inputs and padding as locally — mapped by an actor pool
(``map_batches`` with an actor class, one chunk per call). A worker loads the model itself from
its :class:`~attnxai.audit.engines.ModelRef` (spec and loading options: no weights travel),
once per pass. What the pass needs besides the chunk (the layers; for the target pass the
target, and every CAV of every layer, trained once on the driver) is put in the object store
once (``ray.put``) and read by every worker. Workers return their chunk's token rows, or its
:class:`~attnxai.tcav.stream.ScoreStats`; the driver reduces them in input order.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attnxai.audit.engines import ExampleTables, ModelRef
from attnxai.errors import UserInputError
from attnxai.models.base import ModelAdapter
from attnxai.tcav.cav import TokenTable
from attnxai.tcav.run import FractionProgress, Scorer
from attnxai.tcav.stream import ScoreStats, batch_stats, scoring_attention


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the engine needs Ray Data, not only Ray core
    except ImportError as exc:
        raise UserInputError('The ray engine needs Ray Data: pip install "attnxai[ray]".') from exc
    return ray


@dataclass(frozen=True)
class _Activations:
    """Token activations (players only) of a chunk of examples at ``layers``."""

    layers: tuple[int, ...]

    def run(self, adapter: ModelAdapter, items: list[Any]) -> tuple[list[torch.Tensor], torch.Tensor]:
        cap = adapter.capture(items, grads=False, batch_size=len(items))
        mask = cap.valid_mask
        owner = torch.arange(len(items))[:, None].expand_as(mask)[mask]
        return [cap.activations[l][mask] for l in self.layers], owner


@dataclass(frozen=True)
class _Scores:
    """:class:`ScoreStats` of a chunk of target inputs (one capture with gradients)."""

    target_idx: int
    directions: torch.Tensor
    layers: tuple[int, ...]
    pooling: str
    weightings: tuple[str, ...]
    groups: torch.Tensor
    per_cav: bool

    def run(self, adapter: ModelAdapter, items: list[Any], start: int) -> ScoreStats:
        cap = adapter.capture(items, target=self.target_idx, grads=True, batch_size=len(items),
                              attention=scoring_attention(adapter, self.pooling))
        return batch_stats(cap, start, self.directions, list(self.layers), self.pooling,
                           self.weightings, self.groups, self.per_cav)


class _Worker:
    """A Ray Data actor: loads the model once, then runs the pass's job on each chunk."""

    def __init__(self, model: ModelRef, device: str | None) -> None:
        self.adapter = model.load(device)
        self.jobs: dict[str, Any] = {}

    def __call__(self, batch: dict[str, np.ndarray], job: list[Any]) -> dict[str, np.ndarray]:
        import ray

        ref = job[0]  # in a list, so Ray passes the reference and the job is read once here
        key = ref.hex()
        if key not in self.jobs:
            self.jobs = {key: ray.get(ref)}
        work = self.jobs[key]
        out = []
        for start, payload in zip(batch["start"].tolist(), batch["payload"]):
            items = pickle.loads(payload)
            result = (work.run(self.adapter, items, start) if isinstance(work, _Scores)
                      else work.run(self.adapter, items))
            out.append(pickle.dumps(result, protocol=5))
        return {"start": batch["start"], "result": np.array(out, dtype=object)}


class RayEngine:
    """Shards the passes over ``workers`` Ray Data actors (default: one per CPU of the cluster,
    or per ``num_gpus`` share of its GPUs), connecting to ``address`` (default: a running
    cluster if there is one, else a local one; started clusters are shut down by :meth:`close`)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_gpus: float = 0.0,
                 workers: int | None = None) -> None:
        ray = _ray()
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        resources = ray.cluster_resources()
        self.num_gpus = float(num_gpus)
        if self.num_gpus > 0:
            fit = int(resources.get("GPU", 0) / self.num_gpus)
        else:
            fit = int(resources.get("CPU", 1))
        if fit < 1:
            raise UserInputError(f"The Ray cluster has {resources.get('GPU', 0):g} GPUs; "
                                 f"workers asking {self.num_gpus:g} each do not fit.")
        self.workers = workers or fit
        self.adapter: ModelAdapter | None = None
        self.model: ModelRef | None = None

    def bind(self, adapter: ModelAdapter, model: ModelRef) -> None:
        self.adapter, self.model = adapter, model

    def _map(self, job: Any, items: Sequence[Any], batch_size: int | None,
             progress: Any = None) -> list[Any]:
        """Run ``job`` on every chunk of ``items`` (chunks of the local batch size); the
        results in input order, as ``(start, result)`` pairs."""
        ray = _ray()
        size = batch_size or self.adapter.batch_size
        starts = list(range(0, len(items), size))
        rows = [{"start": s, "payload": pickle.dumps(list(items[s:s + size]), protocol=5)}
                for s in starts]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        device = "cuda" if self.num_gpus > 0 else "cpu"
        ds = ds.map_batches(_Worker, batch_size=1, concurrency=min(self.workers, len(rows)),
                            num_cpus=0 if self.num_gpus > 0 else 1, num_gpus=self.num_gpus,
                            fn_constructor_kwargs={"model": self.model, "device": device},
                            fn_kwargs={"job": [ray.put(job)]}, batch_format="numpy")
        out, done = [], 0
        for row in ds.iter_rows():
            result = pickle.loads(row["result"])
            out.append((int(row["start"]), result))
            done += min(size, len(items) - int(row["start"]))
            if progress is not None:
                progress(done, len(items))
        return sorted(out, key=lambda r: r[0])

    def example_tables(self) -> ExampleTables:
        def tables(items: list[Any], layers: list[int], batch_size: int | None,
                   progress: FractionProgress | None) -> list[TokenTable]:
            def tick(done: int, total: int) -> None:
                if progress:  # as example_tables reports: the first 30% of its stage
                    progress(0.3 * done / total, f"activations of {total} concept and random "
                                                 f"examples on {self.workers} Ray workers")
            parts = self._map(_Activations(tuple(layers)), items, batch_size, tick)
            owners = torch.cat([owner + start for start, (_, owner) in parts])
            return [TokenTable(rows=torch.cat([rows[j] for _, (rows, _) in parts]), example=owners)
                    for j in range(len(layers))]
        return tables

    def scorer(self) -> Scorer:
        def score(*, inputs: Sequence[Any], target_idx: int, directions: torch.Tensor,
                  layers: list[int], pooling: str, weightings: Sequence[str],
                  groups: torch.Tensor, per_cav: bool, batch_size: int | None,
                  start: int = 0, progress: Any = None) -> tuple[ScoreStats, float]:
            job = _Scores(target_idx, directions, tuple(layers), pooling, tuple(weightings),
                          groups, per_cav)
            parts = self._map(job, inputs, batch_size, progress)
            # The workers' scoring time is not the driver's to report.
            return ScoreStats.reduce([stats for _, stats in parts]), 0.0
        return score

    def close(self) -> None:
        self.adapter = None
        if self.started:
            _ray().shutdown()

"""Drill-down helpers: a stored run's CAVs, read from the store, for per-input concept heatmaps.

Every run stores the unit vectors of all its CAVs (the ``cavs`` table, once per run), so the
drill-down shows exactly the directions the run tested, whatever changed since (concept sets,
library versions, device). Nothing is retrained. Runs saved before the store kept CAVs
(schema < 3) have none: :func:`run_cavs` says so (a :class:`UserInputError`) rather than
rebuilding them by replay, which is exact only on the same device, library and concept
versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from attnxai.audit.actcache import model_hash
from attnxai.errors import UserInputError
from attnxai.models.base import ModelAdapter
from attnxai.tcav.scores import ConceptHeatmap, concept_heatmap


@dataclass
class RunCAVs:
    """A concept's CAVs [num_cavs, d] per layer, as stored by a run."""

    concept: str
    cavs: dict[int, torch.Tensor]
    model_changed: bool  # the adapter's weights differ from the run's model


def run_cavs(store: Any, run_id: str, concept: str, adapter: ModelAdapter,
             layers: list[int] | None = None, mhash: str | None = None) -> RunCAVs:
    """The stored CAVs of ``concept`` at ``layers`` (default: the run's) of run ``run_id``."""
    run = store.get_run(run_id)
    if run.status != "completed":
        raise UserInputError(f"Run {run_id} is {run.status}; only completed runs have CAVs.")
    if concept not in run.config.concepts:
        raise UserInputError(f"Run {run_id} did not test the concept {concept!r}; it tested "
                             f"{', '.join(run.config.concepts)}.")
    stored = store.cav_vectors(run_id, concept)
    if not stored:
        raise UserInputError(f"Run {run_id} predates stored CAVs (it was saved by an attnxai "
                             "that did not keep them), so its concept sensitivity cannot be "
                             "shown; run the audit again to see it.")
    run_layers = sorted(stored)
    layers = list(layers) if layers is not None else run_layers
    bad = [l for l in layers if l not in stored]
    if bad:
        raise UserInputError(f"Run {run_id} has no layer(s) {bad}; its layers: {run_layers}.")
    mhash = mhash or model_hash(adapter)
    return RunCAVs(concept=concept, cavs={l: stored[l] for l in layers},
                   model_changed=mhash != run.model_hash)


def layer_heatmaps(adapter: ModelAdapter, x: Any, cavs: RunCAVs, target: int | str,
                   weighting: str = "attention") -> dict[int, ConceptHeatmap]:
    """Per-token concept sensitivity s'_t of input ``x`` at every layer of ``cavs``."""
    return {layer: concept_heatmap(adapter, x, v, layer, target=target, weighting=weighting)
            for layer, v in cavs.cavs.items()}

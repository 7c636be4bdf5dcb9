"""Drill-down helpers: a stored run's CAVs, rebuilt on demand for per-input concept heatmaps.

The store keeps a run's scores, not its CAV vectors. :func:`run_cavs` rebuilds them exactly: the
run's config fixes the CAV plan (``plan_cavs`` is seeded), the concept and pool examples'
activations come from the store's activation cache (filled by the run), and ``train_cavs``
with the run's seed reproduces every direction. If a concept set changed since the run, the
CAVs are those of the current version, and :class:`RunCAVs` says which sets changed.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch

from attnxai.audit.actcache import CachedActivations, model_hash
from attnxai.tcav.cav import train_cavs
from attnxai.io.concepts import load_audit_concepts
from attnxai.errors import UserInputError
from attnxai.models.base import ModelAdapter
from attnxai.tcav.scores import ConceptHeatmap, concept_heatmap
from attnxai.tcav.run import cav_tables, plan_cavs


@dataclass
class RunCAVs:
    """A concept's CAVs [num_cavs, d] per layer, as trained by a stored run."""

    concept: str
    cavs: dict[int, torch.Tensor]
    changed_sets: list[str]  # concept sets whose current version differs from the run's
    model_changed: bool  # the adapter's weights differ from the run's model


def audit_config(run: dict[str, Any]) -> Any:
    """The :class:`attnxai.audit.runner.AuditConfig` a stored run was started with."""
    from attnxai.audit.runner import AuditConfig

    names = {f.name for f in fields(AuditConfig)}
    return AuditConfig(**{k: v for k, v in (run.get("config") or {}).items() if k in names})


def run_cavs(store: Any, run_id: str, concept: str, adapter: ModelAdapter,
             layers: list[int] | None = None, mhash: str | None = None) -> RunCAVs:
    """The CAVs of ``concept`` at ``layers`` (default: the run's) of the stored run ``run_id``."""
    run = store.get_run(run_id)
    if run["status"] != "completed":
        raise UserInputError(f"Run {run_id} is {run['status']}; only completed runs have CAVs.")
    config = audit_config(run)
    if concept not in config.concepts:
        raise UserInputError(f"Run {run_id} did not test the concept {concept!r}; it tested "
                             f"{', '.join(config.concepts)}.")
    tcav = config.tcav_config()
    run_layers = list(run["config"].get("layers") or range(adapter.num_layers))
    layers = list(layers) if layers is not None else run_layers
    bad = [l for l in layers if l not in run_layers]
    if bad:
        raise UserInputError(f"Run {run_id} has no layer(s) {bad}; its layers: {run_layers}.")
    tcav.layers = run_layers
    concepts, pools = load_audit_concepts(list(config.concepts), config.concept_dir,
                                          adapter.modality)
    versions = {c["name"]: c["version_hash"] for c in run.get("concept_versions") or []}
    changed = [c.name for c in [*concepts, *pools.values()]
               if c.name in versions and c.version_hash() != versions[c.name]]
    plan = plan_cavs(concepts, pools, tcav)
    mhash = mhash or model_hash(adapter)
    acts = CachedActivations(store, adapter, mhash, config.batch_size)
    tables = cav_tables(adapter, plan, layers, config.batch_size, acts)
    keep = [k for k, s in enumerate(plan.specs) if s.kind == "concept" and s.name == concept]
    out = {}
    for j, layer in enumerate(layers):
        # All of the layer's CAVs, as the run trained them: the seeded splits follow spec order.
        fit = train_cavs(tables[j], plan.specs, seed=tcav.seed, l2=tcav.l2, holdout=tcav.holdout,
                         device=adapter.device)
        out[layer] = fit.directions[keep]
    return RunCAVs(concept=concept, cavs=out, changed_sets=changed,
                   model_changed=mhash != run.get("model_hash"))


def layer_heatmaps(adapter: ModelAdapter, x: Any, cavs: RunCAVs, target: int | str,
                   weighting: str = "attention") -> dict[int, ConceptHeatmap]:
    """Per-token concept sensitivity s'_t of input ``x`` at every layer of ``cavs``."""
    return {layer: concept_heatmap(adapter, x, v, layer, target=target, weighting=weighting)
            for layer, v in cavs.cavs.items()}

"""Effects of paired concepts for an audit: output effects and layer-wise patching for every
target class, as rows of the tidy effects table (:mod:`attnxai.effects.table`).

The CAV-intervention rows of concepts without pairs need the run's CAVs, so the audit runner
builds them with :func:`intervention_rows` from what TCAV trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnxai.effects.config import EffectsConfig
from attnxai.effects.intervention import InputProgress, Recordings, cav_intervention
from attnxai.effects.output import PairOutputs, pair_outputs, summarise_pairs
from attnxai.effects.patching import PairProgress, PatchingResult, patch_pairs
from attnxai.errors import UserInputError
from attnxai.io.concepts import ConceptSet
from attnxai.models.base import ModelAdapter
from attnxai.schema import PAIRS
from attnxai.stats import NULL_GROUP, mean_interval, min_effect_p_values, p_value

@dataclass
class PairEffects:
    """Everything measured on one paired concept, per pair, for drill-down and storage."""

    concept: str
    outputs: PairOutputs
    patching: PatchingResult | None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def per_pair(self, labels: Sequence[str], targets: Sequence[str]) -> pd.DataFrame:
        """One row per (target, pair): its logit and probability effect (for drill-down)."""
        dl, dp = self.outputs.delta_logit, self.outputs.delta_prob
        frames = [pd.DataFrame({"concept": self.concept, "target": t, "pair": np.arange(len(dl)),
                                "delta_logit": dl[:, labels.index(t)].numpy(),
                                "delta_prob": dp[:, labels.index(t)].numpy()})
                  for t in targets]
        return pd.concat(frames, ignore_index=True)


def check_pairs(adapter: ModelAdapter, concept: ConceptSet, layers: Sequence[int] | None = None
                ) -> None:
    """UserInputError unless ``concept`` holds matched pairs of the model's modality and every
    layer exists (checked before any work, so nothing is computed or stored on bad input)."""
    if concept.modality != adapter.modality:
        raise UserInputError(f"Concept {concept.name!r} holds {concept.modality} examples but "
                             f"{adapter.spec} is a {adapter.modality} model.")
    if not (concept.paired and concept.counterexamples):
        raise UserInputError(f"Concept {concept.name!r} has no matched pairs (each example with "
                             "a counterexample that differs only by the concept), so it has no "
                             "output effect; give it counterexamples and mark it paired.")
    bad = [l for l in layers or [] if not 0 <= l < adapter.num_layers]
    if bad:
        raise UserInputError(f"Layer {bad[0]} does not exist: {adapter.spec} has layers "
                             f"0..{adapter.num_layers - 1}.")


def _rows(dataset: str, target: str, concept: str, columns: list[tuple[int, str]],
          deltas: np.ndarray, cfg: EffectsConfig, seed: int, share_of: float | None = None,
          skipped: int = 0) -> list[dict[str, Any]]:
    """Effects rows of the paired differences ``deltas`` [n, len(columns)], one per
    (layer, measure) column, all tested in one batched call against each measure's minimum
    relevant effect."""
    delta = np.array([cfg.delta(measure) for _, measure in columns])
    s = summarise_pairs(deltas, cfg.paired_test, seed, min_effect=delta)
    return [{"dataset": dataset, "target": target, "concept": concept, "layer": layer,
             "measure": measure, "mean": float(s.mean[j]), "ci_low": float(s.ci_low[j]),
             "ci_high": float(s.ci_high[j]), "p_value": float(s.p_value[j]),
             "p_adjusted": float("nan"), "significant": False, "n_pairs": int(s.n),
             "n_skipped": skipped,
             "share": (float(s.mean[j]) / share_of if share_of not in (None, 0.0)
                       else float("nan")),
             "test": cfg.paired_test, "min_effect": float(delta[j]),
             "p_negligible": float(s.p_negligible[j])}
            for j, (layer, measure) in enumerate(columns)]


def pair_effects(adapter: ModelAdapter, concept: str, with_items: Sequence[Any],
                 without_items: Sequence[Any], targets: Sequence[str], cfg: EffectsConfig,
                 layers: Sequence[int] | None = None, dataset: str = PAIRS, seed: int = 0,
                 batch_size: int | None = None,
                 progress: PairProgress | None = None) -> PairEffects:
    """Output effect (logit and probability) of one paired concept on every target, and with
    ``cfg.patching`` the layer-wise patching both ways, as effects rows.

    Works on any list of pairs: ``with_items[i]`` shows the concept, ``without_items[i]`` is the
    same input without it.
    """
    layers = list(range(adapter.num_layers)) if layers is None else list(layers)
    patching = None
    if cfg.patching:
        patching = patch_pairs(adapter, with_items, without_items, layers, cfg.patch_tokens,
                               batch_size, progress)
        outputs = PairOutputs(patching.with_logits, patching.without_logits)
    else:
        outputs = pair_outputs(adapter, with_items, without_items, batch_size)
    result = PairEffects(concept, outputs, patching)
    result.rows = pair_rows(result, adapter, targets, layers, cfg, dataset, seed)
    return result


def pair_rows(measured: PairEffects, adapter: ModelAdapter, targets: Sequence[str],
              layers: Sequence[int], cfg: EffectsConfig, dataset: str = PAIRS, seed: int = 0
              ) -> list[dict[str, Any]]:
    """The effects rows of measured pairs, tested against ``cfg``'s minimum relevant effects
    (so other δ need no new forward pass)."""
    outputs, patching, rows = measured.outputs, measured.patching, []
    for target in targets:
        k = adapter.label_index(target)
        total = outputs.delta_logit[:, k].numpy()
        rows += _rows(dataset, target, measured.concept,
                      [(-1, "output_logit"), (-1, "output_prob")],
                      np.stack([total, outputs.delta_prob[:, k].numpy()], axis=1), cfg, seed)
        if patching is None:
            continue
        ok = patching.patched.numpy()
        if not ok.any():
            continue
        # Shares are of the output effect of the pairs that could be patched.
        columns = [(layer, name) for name in ("patch_restore", "patch_remove") for layer in layers]
        values = torch.cat([patching.restored(k), patching.removed(k)], dim=1)[ok].numpy()
        rows += _rows(dataset, target, measured.concept, columns, values, cfg, seed,
                      float(total[ok].mean()), int((~ok).sum()))
    return rows


def intervention_values(adapter: ModelAdapter, inputs: Sequence[Any], target: str, layer: int,
                        concept: torch.Tensor, concept_gaps: torch.Tensor, null: torch.Tensor,
                        cfg: EffectsConfig, batch_size: int | None = None,
                        progress: InputProgress | None = None,
                        recordings: Recordings | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per CAV, the mean change of the target logit over (at most ``cfg.intervention_inputs``)
    target inputs when layer ``layer``'s player tokens move along it: for the concept's CAVs
    ``concept`` [R, d] and the null CAVs ``null`` [M, d], all by one step, the concept's own
    scale along its CAVs (the mean of ``concept_gaps`` [R]). A random CAV pushed by its own,
    smaller gap would move the logit less whatever its direction, and a concept with well
    separated examples would win for its step alone (docs/method.md §6.3). ``recordings``:
    see :func:`cav_intervention` (the same ``inputs`` and ``target`` each call)."""
    inputs = moved_inputs(inputs, cfg)
    directions = torch.cat([concept, null])
    step = torch.full((len(directions),), float(concept_gaps.mean()), dtype=directions.dtype)
    values = cav_intervention(adapter, inputs, target, layer, directions, step, batch_size,
                              progress, recordings=recordings).mean(0).numpy()
    return values[: len(concept)], values[len(concept):]


def intervention_rows(adapter: ModelAdapter, inputs: Sequence[Any], target: str, concept: str,
                      pool: str, specs: Sequence[Any], layers: Sequence[int],
                      directions: torch.Tensor, gaps: torch.Tensor, cfg: EffectsConfig,
                      dataset: str = "", batch_size: int | None = None,
                      progress: Callable[[float], None] | None = None,
                      recordings: Recordings | None = None) -> list[dict[str, Any]]:
    """The ``cav_intervention`` rows of one concept without pairs, one per layer, from a TCAV
    run's CAVs: ``specs`` (with ``name``, ``kind`` and ``rep``), ``directions`` [L, K, d] and
    ``gaps`` [L, K]. The concept's first ``intervention_cavs`` CAVs are tested against the
    first ``intervention_null`` of its pool's null CAVs (``random:<pool>``), all moved by the
    step of every CAV of the concept. ``progress(x)`` says how many layers are done (fractions
    within a layer: :data:`InputProgress`). The target inputs' plain pass runs once for every
    layer, and once for every concept that passes the same ``recordings`` (a dict) with the
    same ``inputs`` and ``target``."""
    own = [i for i, s in enumerate(specs) if s.kind == "concept" and s.name == concept]
    moved = sorted(own, key=lambda i: specs[i].rep)[: cfg.intervention_cavs]
    null = null_cavs(specs, pool, cfg.intervention_null)
    n = min(len(inputs), cfg.intervention_inputs)
    recordings = {} if recordings is None else recordings
    rows = []
    for j, layer in enumerate(layers):
        within = None if progress is None else (
            lambda done, total, j=j: progress(j + done / total))
        values, null_values = intervention_values(adapter, inputs, target, layer,
                                                  directions[j, moved], gaps[j, own],
                                                  directions[j, null], cfg, batch_size, within,
                                                  recordings)
        rows.append(intervention_row(values, null_values, target, concept, layer, n,
                                     dataset=dataset, min_effect=cfg.min_logit_effect))
    return rows


def by_pairs(concepts: Sequence[ConceptSet], cfg: EffectsConfig
             ) -> tuple[list[ConceptSet], list[ConceptSet]]:
    """The concepts with matched pairs (output effects, patching), and those without, whose
    CAVs are intervened on (none unless ``cfg.interventions``)."""
    paired = [c for c in concepts if c.paired and c.counterexamples]
    return paired, [c for c in concepts if c not in paired] if cfg.interventions else []


def moved_inputs(inputs: Sequence[Any], cfg: EffectsConfig) -> list[Any]:
    """The target inputs a CAV intervention moves: at most ``cfg.intervention_inputs`` of
    ``inputs``, spread over them (:func:`spread`)."""
    return [inputs[i] for i in spread(len(inputs), cfg.intervention_inputs)]


def spread(available: int, wanted: int) -> np.ndarray:
    """Indices of ``wanted`` of ``available`` items spread evenly over them (all of them when
    there are no more): a CAV intervention's target inputs, so a file sorted by date or source
    is not read from its start only."""
    if available <= wanted:
        return np.arange(available)
    return np.round(np.linspace(0, available - 1, wanted)).astype(int)


def null_cavs(specs: Sequence[Any], pool: str, wanted: int) -> list[int]:
    """Indices into ``specs`` of the first ``wanted`` null CAVs of ``pool`` (``random:<pool>``)
    in rep order, in whole groups of NULL_GROUP: the null a CAV intervention is tested against."""
    null = sorted((i for i, s in enumerate(specs) if s.name == f"random:{pool}"),
                  key=lambda i: specs[i].rep)
    return null[whole_groups(len(null), wanted)]


def whole_groups(available: int, wanted: int) -> slice:
    """The first ``wanted`` of ``available`` null CAVs (or their values), whole groups only."""
    return slice(0, min(available, wanted) // NULL_GROUP * NULL_GROUP)


def intervention_row(concept_values: np.ndarray, null_values: np.ndarray, target: str,
                     concept: str, layer: int, n_inputs: int, shared: str = "positives",
                     dataset: str = "", min_effect: float = 0.0) -> dict[str, Any]:
    """One ``cav_intervention`` row: the mean over the concept's CAVs of their intervention
    values, tested against the null CAVs' values with the grouped test (as TCAV is): by how
    much it exceeds the null's mean, against the minimum relevant effect ``min_effect``
    (logit)."""
    # The interval is over the concept's CAVs (their spread), the test against the null CAVs.
    values = np.asarray(concept_values, dtype=float)
    mean, lo, hi = mean_interval(values)
    # center=None: a finite step need not act oppositely along v and -v, so the null CAVs'
    # values need not be centred on 0; their own mean is used. The margins move the concept's
    # values, so the test's own null variance is used at each margin.
    p, p_negligible = min_effect_p_values(
        values, min_effect, lambda x: np.asarray(p_value(x, null_values, "grouped", center=None,
                                                         shared=shared)),
        center=float(np.mean(null_values)))
    return {"dataset": dataset, "target": target, "concept": concept, "layer": layer,
            "measure": "cav_intervention", "mean": float(mean), "ci_low": float(lo),
            "ci_high": float(hi), "p_value": float(p), "p_adjusted": float("nan"),
            "significant": False, "n_pairs": n_inputs, "n_skipped": 0,
            "share": float("nan"), "test": "grouped", "min_effect": float(min_effect),
            "p_negligible": float(p_negligible)}

"""Effects of paired concepts for an audit: output effects and layer-wise patching for every
target class, as rows of the tidy effects table (:mod:`attnxai.effects.table`).

The CAV-intervention rows of concepts without pairs need the run's CAVs, so the audit runner
builds them with :func:`intervention_rows` from what TCAV trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from attnxai.effects.intervention import cav_intervention
from attnxai.effects.output import PairOutputs, pair_outputs, summarise_pairs
from attnxai.effects.patching import PatchingResult, patch_pairs
from attnxai.errors import UserInputError
from attnxai.io.concepts import ConceptSet
from attnxai.models.base import ModelAdapter
from attnxai.stats import NULL_GROUP, PAIRED_TESTS, mean_interval, p_value

EffectsLevel = Literal["none", "output", "layers", "all"]
EFFECTS_LEVELS: tuple[str, ...] = ("none", "output", "layers", "all")
#: Progress callback: (fraction of the effects done, message).
EffectsProgress = Callable[[float, str], None]


@dataclass(frozen=True)
class EffectsConfig:
    """Settings of the causal-effects part of an audit (docs/method.md §6)."""

    level: EffectsLevel = "all"  # none | output | layers (output + patching) | all (+ CAV interventions)
    test: str = "sign_flip"  # paired test: sign_flip | wilcoxon
    tokens: str = "differing"  # patched tokens: differing | all
    intervention_null: int = 40  # null CAVs used by a CAV intervention (groups of NULL_GROUP)
    intervention_inputs: int = 64  # at most this many target inputs per CAV intervention
    seed: int = 0

    def validate(self) -> None:
        """Raise ValueError on a setting outside its range (callers check user input first)."""
        if self.level not in EFFECTS_LEVELS:
            raise ValueError(f"effects level must be one of {EFFECTS_LEVELS}, not {self.level!r}")
        if self.test not in PAIRED_TESTS:
            raise ValueError(f"paired test must be one of {PAIRED_TESTS}, not {self.test!r}")
        if self.tokens not in ("differing", "all"):
            raise ValueError(f"tokens must be 'differing' or 'all', not {self.tokens!r}")
        if self.intervention_null < 5 * NULL_GROUP:
            raise ValueError(f"intervention_null must be at least {5 * NULL_GROUP}")


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


def _row(dataset: str, target: str, concept: str, layer: int, measure: str, deltas: np.ndarray,
         cfg: EffectsConfig, share_of: float | None = None, skipped: int = 0) -> dict[str, Any]:
    s = summarise_pairs(deltas, cfg.test, cfg.seed)
    mean = float(s.mean)
    share = mean / share_of if share_of not in (None, 0.0) else float("nan")
    return {"dataset": dataset, "target": target, "concept": concept, "layer": layer,
            "measure": measure, "mean": mean, "ci_low": float(s.ci_low), "ci_high": float(s.ci_high),
            "p_value": float(s.p_value), "p_adjusted": float("nan"), "significant": False,
            "n_pairs": int(s.n), "n_skipped": skipped, "share": share, "test": cfg.test}


def pair_effects(adapter: ModelAdapter, concept: str, with_items: Sequence[Any],
                 without_items: Sequence[Any], targets: Sequence[str], cfg: EffectsConfig,
                 layers: Sequence[int] | None = None, dataset: str = "pairs",
                 batch_size: int | None = None,
                 progress: Callable[[int, int], None] | None = None) -> PairEffects:
    """Output effect (logit and probability) of one paired concept on every target, and with
    ``cfg.level`` ``layers`` or ``all`` the layer-wise patching both ways, as effects rows.

    Works on any list of pairs: ``with_items[i]`` shows the concept, ``without_items[i]`` is the
    same input without it.
    """
    cfg.validate()
    layers = list(range(adapter.num_layers)) if layers is None else list(layers)
    patching = None
    if cfg.level in ("layers", "all"):
        patching = patch_pairs(adapter, with_items, without_items, layers, cfg.tokens,
                               batch_size, progress)
        outputs = PairOutputs(patching.with_logits, patching.without_logits)
    else:
        outputs = pair_outputs(adapter, with_items, without_items, batch_size)
    result = PairEffects(concept, outputs, patching)
    for target in targets:
        k = adapter.label_index(target)
        total = outputs.delta_logit[:, k].numpy()
        result.rows.append(_row(dataset, target, concept, -1, "output_logit", total, cfg))
        result.rows.append(_row(dataset, target, concept, -1, "output_prob",
                                outputs.delta_prob[:, k].numpy(), cfg))
        if patching is None:
            continue
        ok = patching.patched.numpy()
        skipped = int((~ok).sum())
        # Shares are of the output effect of the pairs that could be patched.
        base = float(total[ok].mean()) if ok.any() else None
        for name, values in (("patch_restore", patching.restored(k)),
                             ("patch_remove", patching.removed(k))):
            for j, layer in enumerate(layers):
                if not ok.any():
                    continue
                result.rows.append(_row(dataset, target, concept, layer, name,
                                        values[ok, j].numpy(), cfg, base, skipped))
    return result


def intervention_rows(adapter: ModelAdapter, inputs: Sequence[Any], target: str, concept: str,
                      layer: int, concept_cavs: torch.Tensor, concept_alphas: torch.Tensor,
                      null_cavs: torch.Tensor, null_alphas: torch.Tensor, cfg: EffectsConfig,
                      shared: str = "positives", dataset: str = "",
                      batch_size: int | None = None) -> dict[str, Any]:
    """One ``cav_intervention`` row: the mean change of the target logit over the concept's
    CAVs (each moved by its own α), tested against the null CAVs with the grouped test."""
    cfg.validate()
    inputs = list(inputs)[: cfg.intervention_inputs]
    m = min(len(null_cavs), cfg.intervention_null) // NULL_GROUP * NULL_GROUP
    directions = torch.cat([concept_cavs, null_cavs[:m]])
    alphas = torch.cat([concept_alphas, null_alphas[:m]])
    per_cav = cav_intervention(adapter, inputs, target, layer, directions, alphas,
                               batch_size).mean(0).numpy()  # [K]: mean over inputs
    R = len(concept_cavs)
    concept_values, null_values = per_cav[:R], per_cav[R:]
    # The interval is over the concept's CAVs (their spread), the test against the null CAVs.
    mean, lo, hi = mean_interval(concept_values)
    p = p_value(concept_values, null_values, "grouped", center=0.0, shared=shared)
    return {"dataset": dataset, "target": target, "concept": concept, "layer": layer,
            "measure": "cav_intervention", "mean": float(mean), "ci_low": float(lo),
            "ci_high": float(hi), "p_value": p, "p_adjusted": float("nan"),
            "significant": False, "n_pairs": len(inputs), "n_skipped": 0,
            "share": float("nan"), "test": "grouped"}


"""`attnxai bench truth`: how often each method's verdict is right on the ground-truth zoo
(:mod:`attnxai.zoo.members`), and the minimum relevant effect δ chosen leave-one-model-out.

Every (model, audit seed) draws fresh concept pairs, target inputs and a random pool, and
audits the planted concept and the control at the defaults:

- ``tcav_logistic`` / ``tcav_pattern``: TCAV's own test alone (significant at some layer,
  attention weighting, against the matched sign-flip null), with logistic and pattern CAVs;
- ``tcav_star``: what a TCAV chart's ★ marks: a logistic-CAV significant layer whose concept's
  causal effect relies the same way round (:func:`attnxai.audit.verdicts.with_relevance`);
- ``tcav_output``: TCAV in output units: each CAV's token derivatives summed and times the
  concept's own step (the first-order CAV intervention), tested like a CAV intervention
  against δ on the logit; "relies" at some layer;
- ``output_effect``: the pairs' effect on P(target), tested against δ;
- ``patching``: layer-wise patching both ways, against δ on the logit; "relies" at some layer,
  "negligible" at every layer;
- ``combined``: the verdict sentence's (:func:`attnxai.audit.verdicts.causal_label`), which
  is also what a TCAV chart's ★ needs (:func:`attnxai.audit.verdicts.with_relevance`);
- ``cav_intervention``: the concept as an auditor without pairs has it (its examples only,
  against the random pool): TCAV's CAVs moved by the concept's step at every layer, tested
  against the null CAVs and δ on the logit as an audit does at the defaults; "relies" at some
  layer (a CAV intervention is never "negligible": :func:`attnxai.effects.table.
  correct_effects`). It is also the combined verdict of that concept without pairs;
- ``cav_intervention[n inputs, r CAVs, m null]`` (:data:`INTERVENTION_DESIGNS`): the same test
  with other numbers of target inputs, concept CAVs or null CAVs. Every design is scored from
  one measurement of :data:`MEASURED` (each input's change along each direction is measured
  once), so the designs differ by their design alone.

A case's truth is the member's measured one (``relies``, ``none`` or ``borderline``, which is
not scored). δ runs over ``DELTAS`` on the probability with ``LOGIT_PER_PROB`` times it on the
logit. Leave-one-model-out: for each model, δ is the grid value with the fewest combined-verdict
errors on the other models (a missed reliance or a false one; ties go to the larger δ), and that
model's cases are scored at it. The figures are those held-out scores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnxai.audit.verdicts import causal_label, deciding_row, with_relevance
from attnxai.effects.config import EffectsConfig
from attnxai.effects.intervention import cav_intervention, first_order_intervention
from attnxai.effects.run import (intervention_row, null_cavs, pair_effects, pair_rows, spread,
                                 whole_groups)
from attnxai.effects.table import correct_effects, effect_frame
from attnxai.io.concepts import ConceptSet
from attnxai.stats import INCONCLUSIVE, NEGLIGIBLE, RELIES
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import run_tcav
from attnxai.zoo.members import CONTROL, PLANTED, ZOO, Built, Member, build, concept_pairs, pool
from attnxai.zoo.members import target_inputs as zoo_inputs

DELTAS = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05)
LOGIT_PER_PROB = 5.0  # δ on the logit per δ on the probability (about 1/p(1-p) near p = 0.5)
#: A CAV-intervention design: at most so many target inputs (spread over them), the first so
#: many concept CAVs and null CAVs.
Design = tuple[int, int, int]
#: What each case measures: every design is scored from the first of these.
MEASURED: Design = (40, 20, 40)
#: Designs scored beside the defaults': the defaults before them (every input up to 64, 20
#: CAVs), each of the defaults' two cuts alone (inputs, concept CAVs), the null halved alone,
#: and all three.
INTERVENTION_DESIGNS: tuple[Design, ...] = ((40, 20, 40), (16, 20, 40), (40, 10, 40),
                                            (40, 20, 20), (16, 10, 20))


def design_method(design: Design) -> str:
    """The method name of a CAV-intervention design of :data:`INTERVENTION_DESIGNS`."""
    return "cav_intervention[{} inputs, {} CAVs, {} null]".format(*design)


METHODS = ("tcav_logistic", "tcav_pattern", "tcav_star", "tcav_output", "output_effect",
           "patching", "combined", "cav_intervention",
           *map(design_method, INTERVENTION_DESIGNS))
ALPHA = 0.05


@dataclass
class TruthBench:
    """The held-out verdicts (``cases``: model, modality, seed, concept, truth, truth_mean,
    method, delta, verdict; each model at the δ chosen without it), the δ chosen without each
    model, the δ chosen on all, and the verdicts at every δ of the grid (``grid``)."""

    cases: list[dict[str, Any]]
    chosen: dict[str, float]  # held-out model -> δ chosen on the others
    default: float  # δ chosen on every model
    members: list[dict[str, Any]]  # per model: its truth and clean accuracy
    grid: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def frame(self) -> pd.DataFrame:
        """The held-out cases as a DataFrame."""
        return pd.DataFrame(self.cases)

    def grid_frame(self) -> pd.DataFrame:
        """The verdicts at every δ as a DataFrame."""
        return pd.DataFrame(self.grid)


def _concept(name: str, member: Member, pairs: tuple[list, list]) -> ConceptSet:
    return ConceptSet(name=name, modality=member.modality, examples=pairs[0],
                      counterexamples=pairs[1], paired=True, default_pool="zoo-random")


def _pushes(result: Any, null_size: int
            ) -> Iterator[tuple[str, int, int, torch.Tensor, torch.Tensor]]:
    """Per concept of the TCAV run ``result`` and layer: the concept, the layer, its number of
    CAVs R, its CAVs followed by the run's first ``null_size`` null CAVs [K, d], and the step
    that moves every one of them, the concept's mean gap [K]."""
    null = null_cavs(result.specs, "zoo-random", null_size)
    for name in dict.fromkeys(s.name for s in result.specs if s.kind == "concept"):
        own = [i for i, s in enumerate(result.specs) if s.kind == "concept" and s.name == name]
        for j, layer in enumerate(result.layers):
            directions = result.directions[j, own + null]
            yield name, layer, len(own), directions, result.gaps[j, own].mean().expand(
                len(directions))


def _first_order_values(built: Built, inputs: list, result: Any, null_size: int
                        ) -> dict[str, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Per concept and layer, TCAV's CAVs in output units: the first-order intervention of the
    concept's CAVs and of the null CAVs (:func:`_pushes`), averaged over the target inputs
    (one capture with gradients)."""
    cap = built.adapter.capture(inputs, target=built.member.target, attention="readout")
    out: dict[str, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    for name, layer, r, directions, step in _pushes(result, null_size):
        values = first_order_intervention(cap.grad_activations[layer], cap.valid_mask,
                                          directions, step).mean(0).numpy()
        out.setdefault(name, []).append((layer, values[:r], values[r:]))
    return out


#: Per layer: the layer, and each input's change of the target logit [N, K] along the concept's
#: CAVs (first R columns) and the null CAVs (the rest); and R.
InterventionValues = tuple[list[tuple[int, np.ndarray]], int]


def unpaired_tcav(built: Built, inputs: list, concepts: list[ConceptSet],
                  pools: dict[str, ConceptSet], seed: int) -> Any:
    """TCAV at the defaults of ``concepts`` stripped of their pairs: their examples against the
    random pool, as an auditor without pairs has them."""
    unpaired = [ConceptSet(name=c.name, modality=c.modality, examples=c.examples,
                           default_pool=c.default_pool) for c in concepts]
    return run_tcav(built.adapter, inputs, built.member.target, unpaired, pools,
                    TCAVConfig(seed=seed))


def intervention_values(built: Built, inputs: list, result: Any, null_size: int = MEASURED[2]
                        ) -> dict[str, InterventionValues]:
    """Per concept of the TCAV run ``result``: the CAV intervention of every CAV of it and of
    the run's first ``null_size`` null CAVs at every layer (:func:`_pushes`), per target input."""
    out: dict[str, InterventionValues] = {}
    for name, layer, r, directions, step in _pushes(result, null_size):
        values = cav_intervention(built.adapter, inputs, built.member.target, layer, directions,
                                  step).numpy()
        out.setdefault(name, ([], r))[0].append((layer, values))
    return out


def intervention_design_rows(values: InterventionValues, target: str, name: str, delta: float,
                             design: Design) -> pd.DataFrame:
    """One concept's CAV-intervention rows of ``design`` (inputs, concept CAVs, null CAVs: as
    an audit picks them from the measured ones), tested against ``delta`` (logit) and
    corrected as an audit corrects effects."""
    per_layer, r = values
    n_in, n_cavs, n_null = design
    rows = []
    for layer, v in per_layer:
        v = v[spread(len(v), n_in)]
        null = v[:, r:][:, whole_groups(v.shape[1] - r, n_null)]
        rows.append(intervention_row(v[:, :n_cavs].mean(0), null.mean(0), target, name, layer,
                                     len(v), min_effect=delta))
    return correct_effects(effect_frame(rows), "hierarchical", ALPHA)


def _first_order_rows(values: list[tuple[int, np.ndarray, np.ndarray]], target: str, name: str,
                      n_inputs: int, delta: float) -> pd.DataFrame:
    """One concept's first-order rows, tested against ``delta`` (logit) and corrected as an
    audit corrects effects."""
    rows = [intervention_row(own, null, target, name, layer, n_inputs, min_effect=delta)
            for layer, own, null in values]
    return correct_effects(effect_frame(rows), "hierarchical", ALPHA)


def audit_case(built: Built, seed: int, pairs: int = 50, inputs: int = 40, pool_size: int = 120,
               deltas: Sequence[float] = DELTAS) -> list[dict[str, Any]]:
    """Verdicts of every method on one member and audit seed, at every δ of ``deltas``."""
    member, adapter = built.member, built.adapter
    rng = np.random.default_rng(seed)
    concepts = [_concept(c, member, concept_pairs(member, c, pairs, rng)) for c in (PLANTED, CONTROL)]
    items = zoo_inputs(member, inputs, rng)
    pools = {"zoo-random": pool(member, pool_size, rng)}
    target = member.target
    tcav = {kind: run_tcav(adapter, items, target, concepts, pools, TCAVConfig(seed=seed, cav=kind))
            for kind in ("logistic", "pattern")}
    measured = {c.name: pair_effects(adapter, c.name, c.examples, c.counterexamples, [target],
                                     EffectsConfig(level="layers"), seed=seed)
                for c in concepts}
    layers = list(range(adapter.num_layers))
    defaults = EffectsConfig()
    first_order = _first_order_values(built, items, tcav["logistic"], defaults.intervention_null)
    intervened = intervention_values(built, items, unpaired_tcav(built, items, concepts, pools,
                                                                 seed))
    default_design = (defaults.intervention_inputs, defaults.intervention_cavs,
                      defaults.intervention_null)
    # TCAV does not depend on δ: each concept's attention-weighted rows, once.
    tcav_rows = {c.name: {k: r.summary[(r.summary.concept == c.name)
                                       & (r.summary.weighting == "attention")].assign(dataset="zoo")
                          for k, r in tcav.items()}
                 for c in concepts}
    out = []
    for delta in deltas:
        cfg = EffectsConfig(level="layers", min_effect=delta,
                            min_logit_effect=LOGIT_PER_PROB * delta)
        for c in concepts:
            effects = correct_effects(effect_frame(pair_rows(measured[c.name], adapter, [target],
                                                             layers, cfg, seed=seed)),
                                      "hierarchical", ALPHA)
            rows = tcav_rows[c.name]
            output = effects[effects.measure == "output_prob"]
            patch = effects[effects.measure.str.startswith("patch")]
            verdicts = {
                "tcav_logistic": RELIES if rows["logistic"].significant.any() else INCONCLUSIVE,
                "tcav_pattern": RELIES if rows["pattern"].significant.any() else INCONCLUSIVE,
                "tcav_star": RELIES if with_relevance(rows["logistic"], effects).relies.any()
                else INCONCLUSIVE,
                "tcav_output": deciding_row(_first_order_rows(
                    first_order[c.name], target, c.name, len(items), cfg.min_logit_effect))[0],
                "output_effect": str(output.verdict.iloc[0]),
                "patching": deciding_row(patch)[0] if not patch.empty else INCONCLUSIVE,
                "combined": causal_label(effects)[0],
            }
            # The intervention designs' smallest adjusted p beside their verdicts: how far a
            # cheaper design moves the evidence, not only the verdict.
            smallest: dict[str, float] = {}
            for method, design in (("cav_intervention", default_design),
                                   *((design_method(d), d) for d in INTERVENTION_DESIGNS)):
                rows = intervention_design_rows(intervened[c.name], target, c.name,
                                                cfg.min_logit_effect, design)
                verdicts[method] = deciding_row(rows)[0]
                smallest[method] = float(rows["p_adjusted"].min())
            truth = built.truth[c.name]
            out += [{"model": member.name, "modality": member.modality, "seed": seed,
                     "concept": c.name, "truth": truth.label, "truth_mean": truth.mean,
                     "method": m, "delta": delta, "verdict": v,
                     "p_adjusted": smallest.get(m)} for m, v in verdicts.items()]
    return out


def _errors(cases: pd.DataFrame) -> pd.Series:
    """Per δ, the combined verdict's errors: a reliance not called "relies", or a concept
    without one called "relies"."""
    scored = cases[(cases.method == "combined") & (cases.truth != "borderline")]
    wrong = (scored.truth == "relies") != (scored.verdict == RELIES)
    return wrong.groupby(scored.delta).sum()


def choose_delta(cases: pd.DataFrame) -> float:
    """The δ with the fewest combined-verdict errors; ties to the larger δ."""
    errors = _errors(cases)
    return float(errors[errors == errors.min()].index.max())


def bench_truth(members: Sequence[Member] = ZOO, seeds: int = 3, root: str | None = None,
                log: Callable[[str], None] | None = None, **case_kw: Any) -> TruthBench:
    """Build (or reuse) every member, audit it over ``seeds`` seeds, choose δ leave-one-model-
    out and score each model at the δ chosen without it."""
    frames, info = [], []
    for member in members:
        built = build(member, root, log=log)
        info.append({"model": member.name, "modality": member.modality,
                     "kind": member.concept_kind, "strength": member.strength,
                     "accuracy": built.accuracy,
                     **{f"{c}_effect": t.mean for c, t in built.truth.items()},
                     **{f"{c}_truth": t.label for c, t in built.truth.items()}})
        for seed in range(seeds):
            rows = audit_case(built, seed, **case_kw)
            frames.append(pd.DataFrame(rows))
            if log:
                log(f"{member.name} seed {seed}: " + ", ".join(
                    f"{r['concept']} {r['method']} {r['verdict']}" for r in rows
                    if r["delta"] == case_kw.get("deltas", DELTAS)[-1] and r["method"] == "combined"))
    every = pd.concat(frames, ignore_index=True)
    chosen = {m: choose_delta(every[every.model != m]) for m in every.model.unique()}
    held = pd.concat([every[(every.model == m) & (every.delta == d)] for m, d in chosen.items()])
    return TruthBench(held.to_dict("records"), chosen, choose_delta(every), info,
                      every.to_dict("records"))


def confusion(cases: pd.DataFrame) -> pd.DataFrame:
    """Per method and modality: the share of cases with truth "relies" and "none" given each
    verdict, and the counts."""
    scored = cases[cases.truth != "borderline"]
    rows = []
    for (method, modality), g in scored.groupby(["method", "modality"], sort=False):
        row: dict[str, Any] = {"method": method, "modality": modality}
        for truth in ("relies", "none"):
            t = g[g.truth == truth]
            row[f"{truth}_n"] = len(t)
            for v in (RELIES, INCONCLUSIVE, NEGLIGIBLE):
                row[f"{truth}->{v}"] = float((t.verdict == v).mean()) if len(t) else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def format_truth(bench: TruthBench) -> str:
    """The zoo, the chosen δ and the confusion tables as text."""
    lines = ["zoo (truth: mean change of P(target) when the concept is inserted, 400 pairs):",
             f"{'model':<18} {'kind':<8} {'recipe':<7} {'accuracy':>8} {'planted ΔP':>11} "
             f"{'truth':<10} {'control ΔP':>11} {'truth':<10}"]
    for m in bench.members:
        lines.append(f"{m['model']:<18} {m['kind']:<8} {m['strength']:<7} {m['accuracy']:>8.3f} "
                     f"{m['planted_effect']:>+11.4f} {m['planted_truth']:<10} "
                     f"{m['control_effect']:>+11.4f} {m['control_truth']:<10}")
    lines.append("")
    lines.append("δ chosen without each model (probability; logit x%g): " % LOGIT_PER_PROB
                 + ", ".join(f"{m} {d:g}" for m, d in bench.chosen.items()))
    lines.append(f"δ chosen on every model: {bench.default:g}")
    lines.append("")
    table = confusion(bench.frame())
    lines.append(f"{'method':<44} {'modality':<8} {'relies: n':>9} {'→relies':>8} {'→inconcl.':>9} "
                 f"{'→neglig.':>8} {'none: n':>8} {'→relies':>8} {'→inconcl.':>9} {'→neglig.':>8}")
    for _, r in table.iterrows():
        lines.append(
            f"{r['method']:<44} {r['modality']:<8} {r['relies_n']:>9} {100 * r['relies->relies']:>7.0f}% "
            f"{100 * r['relies->inconclusive']:>8.0f}% {100 * r['relies->negligible']:>7.0f}% "
            f"{r['none_n']:>8} {100 * r['none->relies']:>7.0f}% {100 * r['none->inconclusive']:>8.0f}% "
            f"{100 * r['none->negligible']:>7.0f}%")
    lines.append("(leave-one-model-out: each model scored at the δ chosen without it; "
                 "targets: relies→relies ≥ 95% for the combined verdict, none→relies ≤ 5%)")
    return "\n".join(lines)

"""False-alarm rates and power across seeds: what an audit verdict on the built-ins rests on.

- ``bench_seeds``: TCAV of shapes-vit's planted concept and its control for the planted class
  over many seeds, with matched-pair concepts tested against their own sign-flip null CAVs and
  against the random pool's (the rate before the matched null existed), beside the output
  effect of each concept's pairs (docs/method.md §6);
- ``bench_intervention_fpr``: the CAV intervention's false-positive rate on random concepts
  (the README's random-concept protocol: 45 sentences of the random-text pool tested like a
  concept for MiniLM's class ``sports``), each against the run's own null CAVs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from attnxai.effects.config import EffectsConfig
from attnxai.effects.run import (intervention_row, intervention_rows, intervention_values,
                                 null_cavs, pair_effects, whole_groups)
from attnxai.effects.table import correct_effects, effect_frame
from attnxai.errors import UserInputError
from attnxai.io.concepts import ConceptSet, load_audit_concepts, load_concept_set
from attnxai.io.datasets import demo_dataset
from attnxai.models import load_model
from attnxai.stats import CORRECTIONS, NULL_GROUP, grouped_null
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import apply_correction, run_tcav, target_inputs


@dataclass
class SeedsBench:
    """Per matched-null choice: in how many seeds each concept was significant (any layer,
    after the run's correction), and the per-seed, per-layer p-values behind it."""

    model: str
    target: str
    planted: str
    control: str
    seeds: int
    significant: dict[str, dict[str, int]]  # null -> concept -> seeds significant at some layer
    #: null -> correction -> concept -> seeds significant, every correction applied to the same
    #: runs' p-values (the default's counts are ``significant``)
    by_correction: dict[str, dict[str, dict[str, int]]]
    median_p: dict[str, dict[str, list[float]]]  # null -> concept -> per-layer median p (attention)
    #: null -> concept -> per layer (attention): mean over seeds of the TCAV score and of the
    #: CAVs' held-out accuracy, and the seeds significant at that layer after the correction
    per_layer: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    effects: list[dict[str, Any]] = field(default_factory=list)  # output effect per seed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_seeds(spec: str = "builtin:shapes-vit", seeds: int = 20,
                nulls: tuple[str, ...] = ("pool", "sign_flip"), effect_seeds: int = 5,
                device: str | None = None, log: Any = None) -> SeedsBench:
    """TCAV verdicts of the planted and control concepts over ``seeds`` seeds per null, at
    the defaults; the output effect of their pairs for the first ``effect_seeds`` seeds."""
    adapter = load_model(spec, device=device)
    card = adapter.card
    target, planted, control = card["planted_class"], card["planted_concept"], card["control_concept"]
    concepts, pools = load_audit_concepts([planted, control], None, adapter.modality)
    ds = demo_dataset(adapter.modality)
    inputs, _ = target_inputs(ds.items, ds.labels, adapter, target)
    significant: dict[str, dict[str, int]] = {}
    by_correction: dict[str, dict[str, dict[str, int]]] = {}
    median_p: dict[str, dict[str, list[float]]] = {}
    per_layer_table: dict[str, dict[str, list[dict[str, float]]]] = {}
    for null in nulls:
        counts = {planted: 0, control: 0}
        per_correction = {m: {planted: 0, control: 0} for m in CORRECTIONS}
        per_layer: dict[str, list[pd.DataFrame]] = {planted: [], control: []}
        for seed in range(seeds):
            cfg = TCAVConfig(seed=seed, matched_null=null)
            result = run_tcav(adapter, inputs, target, concepts, pools, cfg)
            s = result.summary
            for m in CORRECTIONS:
                corrected = apply_correction(s, m, cfg.alpha)
                for c in counts:
                    per_correction[m][c] += int(corrected[corrected.concept == c].significant.any())
            for c in counts:
                rows = s[s.concept == c]
                counts[c] += int(rows.significant.any())
                per_layer[c].append(rows[rows.weighting == "attention"])
            if log:
                log(f"{null} seed {seed}: " + ", ".join(
                    f"{c} {'significant' if s[s.concept == c].significant.any() else '-'} "
                    f"(min adjusted p {s[s.concept == c].p_adjusted.min():.3g})"
                    for c in counts))
        significant[null] = counts
        by_correction[null] = per_correction
        layers = {c: pd.concat(v).groupby("layer") for c, v in per_layer.items()}
        median_p[null] = {c: g.p_value.median().round(4).tolist() for c, g in layers.items()}
        per_layer_table[null] = {
            c: [{"layer": int(l), "tcav": float(f["mean"].mean()),
                 "accuracy": float(f.cav_accuracy.mean()), "significant": int(f.significant.sum())}
                for l, f in g]
            for c, g in layers.items()}
    effects = []
    # Tested against 0, as the README's seed tables are (the minimum relevant effect is a
    # separate question: docs/method.md §6.5).
    output_only = EffectsConfig(level="output", min_effect=0.0, min_logit_effect=0.0)
    for seed in range(effect_seeds):
        for c in concepts:
            rows = pair_effects(adapter, c.name, c.examples, c.counterexamples, [target],
                                output_only, seed=seed).rows
            prob = next(r for r in rows if r["measure"] == "output_prob")
            effects.append({"seed": seed, "concept": c.name, "mean": prob["mean"],
                            "p_value": prob["p_value"]})
    return SeedsBench(spec, target, planted, control, seeds, significant, by_correction,
                      median_p, per_layer_table, effects)


@dataclass
class InterventionFPRBench:
    """Share of random concepts whose CAV intervention is significant (p < 0.05, uncorrected),
    per size of the intervention's null (its first ``n`` null CAVs), with what the grouped
    test's null model predicts checked directly."""

    model: str
    target: str
    random_concepts: int
    runs: int  # the concepts are split over this many runs, each with its own seed and null
    layers: list[int]
    rate: dict[int, float]  # null size -> rate over every concept and layer
    #: null size -> the rate's standard error over the (run, layer) draws of the null: the
    #: concepts of one draw meet the same null, so their verdicts are not independent
    rate_se: dict[int, float]
    rate_per_layer: dict[int, dict[int, float]]  # null size -> layer -> rate
    #: null size -> the variance, within a draw of the null, of the concepts' means standardised
    #: by the spread the grouped model predicts for them from that draw (below
    #: ``variance_ratio_expected`` when the test is conservative, above it when liberal)
    variance_ratio: dict[int, float]
    #: null size -> what ``variance_ratio`` is when the model fits: the spread is estimated
    #: from G groups, so a standardised mean varies like Student's t, by (G - 1) / (G - 3)
    variance_ratio_expected: dict[int, float]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_intervention_fpr(spec: str = "builtin:minilm-zeroshot", target: str = "sports",
                           random_concepts: int = 200, layers: tuple[int, ...] = (1, 3, 5),
                           num_cavs: int = 10, size: int = 45, seed: int = 0, runs: int = 20,
                           null_sizes: tuple[int, ...] = (40,), device: str | None = None,
                           log: Any = None) -> InterventionFPRBench:
    """Random concepts (``size`` examples of the random-text pool each) tested like concepts
    by CAV intervention against the run's null CAVs, at ``layers``. They are split over
    ``runs`` runs (seeds ``seed``, ``seed + 1``, ...): within one run every concept meets the
    same null CAVs, so the rate is only as precise as the number of runs x layers allows."""
    if random_concepts < 2 * runs:
        raise UserInputError(f"{random_concepts} random concepts cannot fill {runs} runs: each run "
                             "needs at least two (their spread within the run is compared).")
    adapter = load_model(spec, device=device)
    pool = load_concept_set("random-text")
    rng = np.random.default_rng(seed)
    concepts = [ConceptSet(name=f"random-{i:03d}", modality="text", kind="concept",
                           description="random examples of the random-text pool",
                           examples=list(rng.choice(pool.examples, size=size, replace=False)),
                           default_pool=pool.name)
                for i in range(random_concepts)]
    ds = demo_dataset("text")
    inputs, _ = target_inputs(ds.items, ds.labels, adapter, target)
    cfg = EffectsConfig()
    rows, spreads = [], []
    for r, chunk in enumerate(np.array_split(np.arange(random_concepts), runs)):
        batch = [concepts[i] for i in chunk]
        tcav = TCAVConfig(layers=layers, num_cavs=num_cavs, num_null=max(null_sizes),
                          weighting="attention", seed=seed + r)
        result = run_tcav(adapter, inputs, target, batch, {pool.name: pool}, tcav)
        specs = result.specs
        null = null_cavs(specs, pool.name, max(null_sizes))
        for j, layer in enumerate(result.layers):
            z: dict[int, list[float]] = {n: [] for n in null_sizes}
            for c in batch:
                own = [i for i, s in enumerate(specs) if s.name == c.name]
                values, null_values = intervention_values(
                    adapter, inputs, target, layer, result.directions[j, own],
                    result.gaps[j, own], result.directions[j, null], cfg)
                for n in null_sizes:  # each size's null: the first n of the same null CAVs
                    kept = null_values[whole_groups(len(null_values), n)]
                    rows.append({**intervention_row(values, kept, target, c.name, layer,
                                                    len(inputs)), "null": n, "run": r})
                    model = grouped_null(kept, num_cavs)
                    # Without the center's own error, which the draw's concepts share.
                    z[n].append((values.mean() - model.center) / np.sqrt(model.variance))
            # The concepts of one draw share its null's error in the center, which the spread of
            # their standardised means within the draw leaves out.
            spreads += [{"null": n, "observed": np.var(v, ddof=1) * (len(v) - 1),
                         "dof": len(v) - 1} for n, v in z.items()]
        if log:
            done = pd.DataFrame(rows)
            log(f"run {r + 1}/{runs}: " + ", ".join(
                f"null {n}: {100 * (g.p_value < 0.05).mean():.1f}%" for n, g in done.groupby("null")))
    hit = pd.DataFrame(rows).assign(hit=lambda f: f.p_value < 0.05)
    draws = hit.groupby(["null", "run", "layer"]).hit.mean().groupby("null")
    spread = pd.DataFrame(spreads).groupby("null").sum()
    return InterventionFPRBench(
        spec, target, random_concepts, runs, list(layers),
        {int(n): float(g.hit.mean()) for n, g in hit.groupby("null")},
        {int(n): float(g.std(ddof=1) / np.sqrt(len(g))) for n, g in draws},
        {int(n): {int(l): float(h.hit.mean()) for l, h in g.groupby("layer")}
         for n, g in hit.groupby("null")},
        {int(n): float(row.observed / row.dof) for n, row in spread.iterrows()},
        {int(n): (n // NULL_GROUP - 1) / (n // NULL_GROUP - 3) for n in null_sizes})


@dataclass
class InterventionTruthBench:
    """CAV interventions of shapes-vit's planted concept and its control as concepts without
    pairs (their examples only, against the random pool), over seeds at the defaults."""

    model: str
    target: str
    planted: str
    control: str
    seeds: int
    significant: dict[str, int]  # concept -> seeds significant at some layer (after correction)
    min_p_adjusted: dict[str, list[float]]  # concept -> per seed
    mean_per_layer: dict[str, list[float]]  # concept -> per layer: mean over seeds of the effect

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_intervention_truth(spec: str = "builtin:shapes-vit", seeds: int = 5,
                             device: str | None = None, log: Any = None) -> InterventionTruthBench:
    """Power and false alarms of the CAV intervention on a ground truth: the planted concept
    and the control of a built-in with a planted shortcut, stripped of their counterexamples
    (so they are tested as an auditor's unpaired concept sets are), every layer, each seed's
    effects corrected as an audit corrects them."""
    adapter = load_model(spec, device=device)
    card = adapter.card
    target, planted, control = card["planted_class"], card["planted_concept"], card["control_concept"]
    concepts, pools = load_audit_concepts([planted, control], None, adapter.modality)
    concepts = [replace(c, paired=False, counterexamples=[]) for c in concepts]
    ds = demo_dataset(adapter.modality)
    inputs, _ = target_inputs(ds.items, ds.labels, adapter, target)
    cfg = EffectsConfig(min_effect=0.0, min_logit_effect=0.0)  # against 0, as the README's table
    frames = []
    for seed in range(seeds):
        tcav = TCAVConfig(seed=seed)
        result = run_tcav(adapter, inputs, target, concepts, pools, tcav)
        rows = [row for c in concepts
                for row in intervention_rows(adapter, inputs, target, c.name, c.default_pool,
                                             result.specs, result.layers, result.directions,
                                             result.gaps, cfg, ds.name)]
        frame = correct_effects(effect_frame(rows), tcav.correction, tcav.alpha).assign(seed=seed)
        frames.append(frame)
        if log:
            log(f"seed {seed}: " + ", ".join(
                f"{c} {'significant' if g.significant.any() else '-'} (min adjusted p "
                f"{g.p_adjusted.min():.3g})" for c, g in frame.groupby("concept", sort=False)))
    every = pd.concat(frames, ignore_index=True)
    by = {c: every[every.concept == c] for c in (planted, control)}
    return InterventionTruthBench(
        spec, target, planted, control, seeds,
        {c: int(f.groupby("seed").significant.any().sum()) for c, f in by.items()},
        {c: f.groupby("seed").p_adjusted.min().round(4).tolist() for c, f in by.items()},
        {c: f.groupby("layer")["mean"].mean().round(5).tolist() for c, f in by.items()})


def format_seeds(bench: SeedsBench) -> str:
    """The seeds benchmark as text."""
    lines = [f"{bench.model}: {bench.planted} (planted) and {bench.control} (control) -> "
             f"{bench.target}, {bench.seeds} seeds at the defaults",
             f"{'null of matched pairs':<22} {'planted significant':>20} {'control significant':>20}"]
    for null, counts in bench.significant.items():
        lines.append(f"{null:<22} {counts[bench.planted]:>14}/{bench.seeds:<5} "
                     f"{counts[bench.control]:>14}/{bench.seeds:<5}")
    for null, per in bench.by_correction.items():
        lines.append(f"{null}, by correction: " + "; ".join(
            f"{m} {c[bench.planted]}/{bench.seeds} planted, {c[bench.control]}/{bench.seeds} control"
            for m, c in per.items()))
    for null, per in bench.median_p.items():
        for c, ps in per.items():
            lines.append(f"median p per layer ({null}, {c}, attention): "
                         + " ".join(f"{p:.3g}" for p in ps))
    for null, per in bench.per_layer.items():
        lines.append(f"per layer ({null}, attention; means over seeds, seeds significant):")
        for c, layers in per.items():
            lines.append(f"  {c}: " + "; ".join(
                f"{r['layer']}: TCAV {r['tcav']:.2f}, acc {r['accuracy']:.2f}, "
                f"{r['significant']}/{bench.seeds}" for r in layers))
    if bench.effects:
        lines.append("output effect on P(target) (sign-flip test):")
        for e in bench.effects:
            lines.append(f"  seed {e['seed']} {e['concept']:<16} {e['mean']:+.4f}  p = {e['p_value']:.2g}")
    return "\n".join(lines)

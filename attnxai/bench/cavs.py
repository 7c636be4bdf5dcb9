"""`attnxai bench cavs`: pattern against logistic CAVs, side by side in one run.

Per CAV kind (``TCAVConfig(cav="logistic" | "pattern")``), on the built-ins:

- calibration: the README's protocol. Random "concepts" of 45 sentences drawn from the
  ``random-text`` pool are each tested like a concept for the class ``sports`` of
  ``builtin:minilm-zeroshot`` at layers 1, 3 and 5 (10 CAVs each, 200 null CAVs, the grouped
  test on the derivative, attention weighting). The false-positive rate is the share of those
  tests with p < 0.05 before correction. Concepts go through :func:`run_tcav` in chunks, each
  chunk with its own seed and so its own null CAVs, so the rate does not hang on one null.
- power: the default audit (all layers, both weightings, Benjamini–Hochberg across the run) of
  the MiniLM demo (``sports`` with ``sports-words``, ``finance-words``, ``weather``,
  ``negation``) and of shapes-vit (``triangle`` with its planted ``striped-objects`` and its
  control ``red-objects``, which must stay non-significant): the significant (layer, weighting,
  direction) tests and the smallest adjusted p-value of each concept.
- alignment with the ground-truth direction (Pahde et al., ICLR 2025): per layer, the cosine
  between a concept's CAV (the mean of its repetitions) and the mean activation difference of
  its matched pairs over their differing tokens, on the rows the run itself trains on
  (:func:`plan_cavs`, :func:`cav_tables`). A matched CAV trains on subsets of those same pairs,
  so the pattern CAV (a difference of means) sits close to that direction by construction; the
  ``random negatives`` alignment is the one that is not circular: the CAVs of the concept's
  examples against its random pool (every token), compared with the same pair direction.
- cost: the seconds of CAV training per layer (``TCAVResult.timings``), with the number of
  CAVs trained per layer.

Every example's activations are computed once (:class:`CachedActivations`) and shared by
both kinds and all calibration chunks.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from attnxai.io.concepts import ConceptSet
from attnxai.models.base import ModelAdapter
from attnxai.tcav.cav import CAVSpec, TokenTable, train_cavs, train_pattern_cavs
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import (TCAVResult, cav_tables, example_tables, plan_cavs, run_tcav,
                              target_inputs)

#: The CAV kinds compared, in table order.
KINDS = ("logistic", "pattern")

#: Per built-in: (target class, concepts audited for power, matched-pair concepts aligned).
POWER_AUDITS = {
    "builtin:minilm-zeroshot": ("sports", ["sports-words", "finance-words", "weather", "negation"],
                                ["negation"]),
    "builtin:shapes-vit": ("triangle", ["striped-objects", "red-objects"],
                           ["striped-objects", "red-objects"]),
}
#: The README's calibration protocol.
CALIBRATION = {"model": "builtin:minilm-zeroshot", "target": "sports", "pool": "random-text",
               "layers": (1, 3, 5), "size": 45, "num_cavs": 10, "num_null": 200}


def _key(item: Any) -> str:
    return item if isinstance(item, str) else f"path:{item}"


class CachedActivations:
    """An :data:`attnxai.tcav.run.ActivationSource` that computes each distinct example's token
    activations once (at every layer) and serves tables in any order and for any layers."""

    def __init__(self, adapter: ModelAdapter, batch_size: int | None = None) -> None:
        self.adapter = adapter
        self.batch_size = batch_size
        self._rows: dict[str, list[torch.Tensor]] = {}  # item -> per layer [tokens, d]

    def __call__(self, items: list[Any], layers: list[int]) -> list[TokenTable]:
        new = list(dict.fromkeys(_key(x) for x in items if _key(x) not in self._rows))
        if new:
            first = {}
            for x in items:
                first.setdefault(_key(x), x)
            todo = [first[k] for k in new]
            all_layers = list(range(self.adapter.num_layers))
            tables = example_tables(self.adapter, todo, all_layers, self.batch_size, None)
            counts = torch.bincount(tables[0].example, minlength=len(todo)).tolist()
            per_layer = [torch.split(t.rows, counts) for t in tables]
            for i, k in enumerate(new):
                self._rows[k] = [per_layer[l][i] for l in all_layers]
        blocks = [self._rows[_key(x)] for x in items]
        example = torch.cat([torch.full((len(b[0]),), e, dtype=torch.long)
                             for e, b in enumerate(blocks)])
        return [TokenTable(rows=torch.cat([b[l] for b in blocks]), example=example)
                for l in layers]


# -- calibration --------------------------------------------------------------------------------
@dataclass
class Calibration:
    """False-positive rate of one CAV kind on random concepts."""

    kind: str
    n_concepts: int
    n_tests: int
    false_positive_rate: float
    by_layer: dict[int, float]
    cav_s_per_layer: float  # mean over chunks
    cavs_per_layer: int  # in the largest chunk


def random_concepts(pool: ConceptSet, n: int, size: int, seed: int) -> list[ConceptSet]:
    """`n` random "concepts" of `size` examples each, drawn without replacement from `pool`."""
    rng = np.random.default_rng(seed)
    return [ConceptSet(name=f"random-concept-{i}", modality=pool.modality,
                       examples=[pool.examples[j] for j in
                                 rng.choice(len(pool.examples), size, replace=False)],
                       default_pool=pool.name)
            for i in range(n)]


def calibration(adapter: ModelAdapter, inputs: Sequence[Any], target: str, pool: ConceptSet,
                kind: str, concepts: list[ConceptSet], layers: Sequence[int],
                num_cavs: int = 10, num_null: int = 200, chunk: int = 50, seed: int = 0,
                activations: CachedActivations | None = None) -> Calibration:
    """Test every random concept like a concept (grouped test, attention weighting, no
    correction) and count p < 0.05. Chunk c of `chunk` concepts runs with seed ``seed + c``,
    so each chunk has its own null CAVs."""
    acts = activations or CachedActivations(adapter)
    summaries, cav_s, n_cavs = [], [], 0
    for c, start in enumerate(range(0, len(concepts), chunk)):
        cfg = TCAVConfig(layers=tuple(layers), num_cavs=num_cavs, num_null=num_null,
                         weighting="attention", correction="none", min_accuracy=0.0,
                         seed=seed + c, cav=kind)
        res = run_tcav(adapter, inputs, target, concepts[start:start + chunk],
                       {pool.name: pool}, cfg, activations=acts)
        summaries.append(res.summary)
        cav_s.append(res.timings["cav_training_s"] / len(layers))
        n_cavs = max(n_cavs, int(res.timings["num_cavs_per_layer"]))
    p = np.concatenate([s.p_value.to_numpy() for s in summaries])
    lay = np.concatenate([s.layer.to_numpy() for s in summaries])
    return Calibration(kind=kind, n_concepts=len(concepts), n_tests=len(p),
                       false_positive_rate=float((p < 0.05).mean()),
                       by_layer={int(l): float((p[lay == l] < 0.05).mean()) for l in layers},
                       cav_s_per_layer=float(np.mean(cav_s)), cavs_per_layer=n_cavs)


# -- alignment ----------------------------------------------------------------------------------
def pair_directions(table: TokenTable, pairs: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """[d] the ground-truth direction of a matched-pair concept at one layer: the mean over its
    pairs of (mean row of the example - mean row of its counterexample), on `table`'s rows (the
    differing tokens, in a table from :func:`cav_tables`)."""
    E = int(table.example.max()) + 1
    X = table.rows.double()
    sums = torch.zeros(E, X.shape[1], dtype=X.dtype).index_add_(0, table.example, X)
    means = sums / torch.bincount(table.example, minlength=E).clamp(min=1)[:, None].to(X.dtype)
    pos, neg = (torch.as_tensor(p, dtype=torch.long) for p in pairs)
    return (means[pos] - means[neg]).mean(0)


def concept_direction(directions: torch.Tensor, specs: list[CAVSpec], name: str) -> torch.Tensor:
    """[L, d] the mean over a concept's repetitions of its CAVs ([L, K, d] `directions`)."""
    keep = [k for k, s in enumerate(specs) if s.kind == "concept" and s.name == name]
    return directions[:, keep].double().mean(1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two vectors (0 when either is zero)."""
    a, b = a.double(), b.double()
    den = float(a.norm() * b.norm())
    return float(a @ b) / den if den > 0 else 0.0


def matched_tables(adapter: ModelAdapter, concepts: Sequence[ConceptSet],
                   pools: dict[str, ConceptSet], cfg: TCAVConfig, layers: list[int],
                   activations: CachedActivations | None = None
                   ) -> tuple[list[TokenTable], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The run's own CAV tables (pairs cut to their differing tokens) and, per matched-pair
    concept trained on them, its (example indices, counterexample indices)."""
    plan = plan_cavs(concepts, pools, cfg)
    tables = cav_tables(adapter, plan, layers, cfg.batch_size, activations)
    restricted = sorted(n for n, m in plan.modes.items() if m == "matched") \
        if cfg.pair_rows == "differing" else []
    return tables, dict(zip(restricted, plan.pairs))


def alignment(result: TCAVResult, tables: list[TokenTable],
              pairs: dict[str, tuple[np.ndarray, np.ndarray]], names: Sequence[str]
              ) -> dict[str, list[float]]:
    """Per concept in `names`: per layer of `result`, the cosine between the concept's mean CAV
    and its pairs' mean difference over their differing tokens (tables in `result.layers`)."""
    out = {}
    for name in names:
        mean_cav = concept_direction(result.directions, result.specs, name)
        out[name] = [cosine(mean_cav[j], pair_directions(tables[j], pairs[name]))
                     for j in range(len(result.layers))]
    return out


def random_negative_alignment(adapter: ModelAdapter, concepts: Sequence[ConceptSet],
                              pools: dict[str, ConceptSet], cfg: TCAVConfig, layers: list[int],
                              truth: dict[str, list[torch.Tensor]],
                              activations: CachedActivations | None = None
                              ) -> dict[str, list[float]]:
    """The non-circular alignment: CAVs of each concept in `truth` trained on its examples
    against its random pool (every token), compared per layer with the concept's pair
    direction ``truth[name][j]``. Only the concept CAVs are trained (no null)."""
    sets = [c for c in concepts if c.name in truth]
    rcfg = replace(cfg, negatives="random", num_null=0, num_random=0, test="welch",
                   matched_null="pool")
    plan = plan_cavs(sets, pools, rcfg)
    specs = [s for s in plan.specs if s.kind == "concept"]
    tables = cav_tables(adapter, plan, layers, cfg.batch_size, activations)
    dirs = []
    for t in tables:
        fit = (train_pattern_cavs(t, specs, seed=cfg.seed, holdout=cfg.holdout)
               if cfg.cav == "pattern" else
               train_cavs(t, specs, seed=cfg.seed, l2=cfg.l2, holdout=cfg.holdout))
        dirs.append(fit.directions)
    directions = torch.stack(dirs)
    return {name: [cosine(concept_direction(directions, specs, name)[j], truth[name][j])
                   for j in range(len(layers))] for name in truth}


# -- power and the whole bench ------------------------------------------------------------------
@dataclass
class AuditFigures:
    """One default audit of one built-in with one CAV kind."""

    model: str
    kind: str
    target: str
    #: concept -> significant tests as "L<layer><a|p><+|->" (a = attention, p = plain weighting)
    significant: dict[str, list[str]]
    best_p_adjusted: dict[str, float]
    best_p: dict[str, float]
    cav_accuracy: dict[str, list[float]]  # concept -> per layer mean held-out accuracy
    alignment: dict[str, list[float]]  # matched concept -> per layer cosine with the truth
    random_negative_alignment: dict[str, list[float]]
    cav_s_per_layer: float
    cavs_per_layer: int
    layers: list[int] = field(default_factory=list)


def power_figures(result: TCAVResult) -> tuple[dict[str, list[str]], dict[str, float],
                                                dict[str, float], dict[str, list[float]]]:
    """From a run's summary: per concept, its significant tests, smallest adjusted and raw
    p-values, and per-layer CAV accuracy."""
    s = result.summary
    sig, best_adj, best_p, acc = {}, {}, {}, {}
    for name, g in s.groupby("concept", sort=False):
        hits = g[g.significant].sort_values(["layer", "weighting"])
        sig[name] = [f"L{int(r.layer)}{r.weighting[0]}{'+' if r.direction == 'positive' else '-'}"
                     for r in hits.itertuples()]
        best_adj[name] = float(g.p_adjusted.min())
        best_p[name] = float(g.p_value.min())
        acc[name] = [float(g[g.layer == l].cav_accuracy.mean()) for l in result.layers]
    return sig, best_adj, best_p, acc


def audit_figures(adapter: ModelAdapter, spec: str, inputs: Sequence[Any], target: str,
                  concepts: Sequence[ConceptSet], pools: dict[str, ConceptSet],
                  cfg: TCAVConfig, aligned: Sequence[str],
                  activations: CachedActivations | None = None) -> AuditFigures:
    """Run one audit with `cfg` and collect its power, alignment (for the matched-pair
    concepts `aligned`) and cost figures."""
    acts = activations or CachedActivations(adapter, cfg.batch_size)
    result = run_tcav(adapter, inputs, target, concepts, pools, cfg, activations=acts)
    tables, pairs = matched_tables(adapter, concepts, pools, cfg, result.layers, acts)
    names = [n for n in aligned if n in pairs]
    truth = {n: [pair_directions(t, pairs[n]) for t in tables] for n in names}
    sig, best_adj, best_p, acc = power_figures(result)
    return AuditFigures(
        model=spec, kind=cfg.cav, target=target, significant=sig, best_p_adjusted=best_adj,
        best_p=best_p, cav_accuracy=acc, alignment=alignment(result, tables, pairs, names),
        random_negative_alignment=random_negative_alignment(adapter, concepts, pools, cfg,
                                                            result.layers, truth, acts),
        cav_s_per_layer=result.timings["cav_training_s"] / len(result.layers),
        cavs_per_layer=int(result.timings["num_cavs_per_layer"]), layers=list(result.layers))


@dataclass
class CAVBench:
    """Everything `attnxai bench cavs` measured."""

    calibration: list[Calibration]
    audits: list[AuditFigures]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_cavs(n_random: int = 400, chunk: int = 50, kinds: Sequence[str] = KINDS,
               models: Sequence[str] = tuple(POWER_AUDITS), device: str | None = None,
               seed: int = 0, log: Any = None) -> CAVBench:
    """Measure every CAV kind in `kinds` on the built-ins (see the module docstring): the
    demo audits of `models` first, then the calibration on `n_random` random concepts (0 skips
    it). `log` (a file) gets each figure as soon as it is measured."""
    from attnxai.io.concepts import load_audit_concepts, load_concept_set
    from attnxai.io.datasets import demo_dataset
    from attnxai.models import load_model

    def say(msg: str) -> None:
        if log is not None:
            print(msg, file=log, flush=True)

    t0 = time.perf_counter()
    cals, audits = [], []
    adapters: dict[str, tuple[ModelAdapter, CachedActivations]] = {}

    def get(spec: str) -> tuple[ModelAdapter, CachedActivations]:
        if spec not in adapters:
            ad = load_model(spec, device=device)
            adapters[spec] = (ad, CachedActivations(ad))
        return adapters[spec]

    for spec in models:
        ad, acts = get(spec)
        target, names, aligned = POWER_AUDITS[spec]
        concepts, pools = load_audit_concepts(names, None, ad.modality)
        ds = demo_dataset(ad.modality)
        inputs, _ = target_inputs(ds.items, ds.labels, ad, target)
        for kind in kinds:
            say(f"audit of {spec}, {kind} ...")
            audits.append(audit_figures(ad, spec, inputs, target, concepts, pools,
                                        TCAVConfig(cav=kind, seed=seed), aligned, acts))
            say(f"  {audits[-1]}")
    if n_random > 0:
        ad, acts = get(CALIBRATION["model"])
        pool = load_concept_set(CALIBRATION["pool"])
        ds = demo_dataset(ad.modality)
        inputs, _ = target_inputs(ds.items, ds.labels, ad, CALIBRATION["target"])
        concepts = random_concepts(pool, n_random, CALIBRATION["size"], seed)
        for kind in kinds:
            say(f"calibration, {kind}: {n_random} random concepts ...")
            cals.append(calibration(ad, inputs, CALIBRATION["target"], pool, kind, concepts,
                                    CALIBRATION["layers"], CALIBRATION["num_cavs"],
                                    CALIBRATION["num_null"], chunk, seed, acts))
            say(f"  {cals[-1]}")
    return CAVBench(calibration=cals, audits=audits, seconds=time.perf_counter() - t0)


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.0e}"


def format_cavs_table(bench: CAVBench) -> str:
    """One markdown table: a row per figure, a column per CAV kind."""
    kinds = list(dict.fromkeys([c.kind for c in bench.calibration]
                               + [a.kind for a in bench.audits]))
    rows: list[tuple[str, dict[str, str]]] = []
    cal = {c.kind: c for c in bench.calibration}
    if cal:
        any_cal = next(iter(cal.values()))
        rows.append((f"false-positive rate, {any_cal.n_concepts} random concepts x "
                     f"{len(any_cal.by_layer)} layers (p < 0.05; layers "
                     f"{'/'.join(map(str, any_cal.by_layer))})",
                     {k: f"{c.false_positive_rate:.1%} ("
                         + ", ".join(f"{v:.1%}" for v in c.by_layer.values()) + ")"
                      for k, c in cal.items()}))
    models = list(dict.fromkeys(a.model for a in bench.audits))
    short = {"builtin:minilm-zeroshot": "MiniLM", "builtin:shapes-vit": "shapes-vit"}
    for m in models:
        by_kind = {a.kind: a for a in bench.audits if a.model == m}
        first = next(iter(by_kind.values()))
        for name in first.significant:
            rows.append((f"{short.get(m, m)} `{name}`: significant tests; best adjusted p",
                         {k: (" ".join(a.significant[name]) or "none") + "; "
                             + _fmt_p(a.best_p_adjusted[name]) for k, a in by_kind.items()}))
        for name in first.cav_accuracy:
            rows.append((f"{short.get(m, m)} `{name}`: CAV accuracy, layers "
                         f"{first.layers[0]}-{first.layers[-1]}",
                         {k: " ".join(f"{v:.2f}" for v in a.cav_accuracy[name])
                          for k, a in by_kind.items()}))
        for name in first.alignment:
            rows.append((f"{short.get(m, m)} `{name}`: cos(CAV, pair direction), layers "
                         f"{first.layers[0]}-{first.layers[-1]}",
                         {k: " ".join(f"{v:.2f}" for v in a.alignment[name])
                          for k, a in by_kind.items()}))
            rows.append((f"{short.get(m, m)} `{name}`, random negatives: cos(CAV, pair direction)",
                         {k: " ".join(f"{v:.2f}" for v in a.random_negative_alignment[name])
                          for k, a in by_kind.items()}))
        rows.append((f"{short.get(m, m)}: CAV training s/layer ({first.cavs_per_layer} CAVs)",
                     {k: f"{a.cav_s_per_layer:.2f}" for k, a in by_kind.items()}))
    if cal:
        any_cal = next(iter(cal.values()))
        rows.append((f"calibration: CAV training s/layer ({any_cal.cavs_per_layer} CAVs)",
                     {k: f"{c.cav_s_per_layer:.2f}" for k, c in cal.items()}))
    head = "| figure | " + " | ".join(f"`{k}`" for k in kinds) + " |"
    lines = [head, "|---|" + "---|" * len(kinds)]
    lines += ["| " + label + " | " + " | ".join(v.get(k, "") for k in kinds) + " |"
              for label, v in rows]
    lines.append(f"(measured in {bench.seconds:.0f} s; tests: grouped on the derivative; "
                 "significant = BH-adjusted p < 0.05 at a reliable layer, a/p = attention/plain "
                 "weighting, +/- = direction)")
    return "\n".join(lines)

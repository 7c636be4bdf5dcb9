"""`run_tcav`: one TCAV audit of one target class, from concept sets to tidy result tables.

Steps: (1) forward passes over every example involved (concepts, counterexamples, random
pools) give token activations per layer; (2) all CAVs of a layer — concepts x repetitions plus
random-vs-random CAVs — are trained in one batched solve; (3) batched forward+backward passes
over the target inputs give S(x) for all layers x all CAVs in one contraction per batch, and
only their sufficient statistics are kept (:mod:`attnxai.tcav.stream`: memory does not grow
with the inputs beyond what is stored per input); (4) scores are tested against the random
CAVs and corrected across the run's tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from attnxai.tcav.cav import (CAVFit, CAVSpec, TokenTable, projection_gaps, train_cavs,
                              train_pattern_cavs)
from attnxai.io.concepts import ConceptSet
from attnxai.errors import UserInputError
from attnxai.memory import release_freed_memory
from attnxai.models.base import ModelAdapter
from attnxai.models.pairs import differing_players
from attnxai.schema import TABLES
from attnxai.stats import NULL_GROUP, NULL_TESTS, STATISTICS, adjust_frame, p_value
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.spill import LayerTables, MappedTables, TableWriter
from attnxai.tcav.stream import PER_INPUT, ScoreStats, concept_groups, stream_stats

#: Progress of a stage: ``(fraction done 0..1, message)``.
FractionProgress = Callable[[float, str], None]
#: Token activations of examples at layers: ``(items, layers) -> one TokenTable per layer``, rows in
#: item order as :func:`example_tables` returns them (lets a caller serve them from a cache).
ActivationSource = Callable[[list[Any], list[int]], Sequence[TokenTable]]
#: Scores target inputs: called with the keyword arguments of :func:`stream_stats` after
#: ``adapter``; returns the inputs' statistics and the seconds spent scoring (lets an engine
#: shard the pass over workers).
Scorer = Callable[..., tuple[ScoreStats, float]]


@dataclass
class TCAVResult:
    """Tidy tables of one run (in the columns of :data:`attnxai.schema.TABLES`, without
    ``dataset``) plus every CAV it used, for drill-down heatmaps and storage."""

    summary: pd.DataFrame  # one row per (concept, layer, weighting)
    cav_scores: pd.DataFrame  # one row per (CAV, layer, weighting), concepts and random CAVs
    input_summary: pd.DataFrame  # mean, std, positive share of S(x) over a concept's CAVs per input
    input_scores: pd.DataFrame  # S(x) per (concept CAV, layer, weighting, input); on request
    cav_accuracy: pd.DataFrame  # held-out accuracy per (CAV, layer)
    specs: list[CAVSpec]  # every CAV of a layer, in the order of `directions`
    layers: list[int]
    directions: torch.Tensor  # [L, K, d] unit vectors, layer x spec
    gaps: torch.Tensor | None = None  # [L, K] each CAV's projection gap (CAV-intervention step)
    config: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def cavs(self) -> dict[tuple[str, int], torch.Tensor]:
        """(concept, layer) -> the concept's CAVs [num_cavs, d]."""
        out = {}
        for name in dict.fromkeys(s.name for s in self.specs if s.kind == "concept"):
            keep = [k for k, s in enumerate(self.specs) if s.kind == "concept" and s.name == name]
            out.update({(name, l): self.directions[j, keep] for j, l in enumerate(self.layers)})
        return out

    def cav_table(self) -> pd.DataFrame:
        """Every CAV per layer as rows of the ``cavs`` table (vectors as float32 bytes)."""
        vectors = self.directions.detach().cpu().to(torch.float32).numpy()
        rows = [{"cav_name": s.name, "rep": s.rep, "kind": s.kind, "layer": l,
                 "dim": vectors.shape[-1], "vector": vectors[j, k].astype("<f4").tobytes()}
                for j, l in enumerate(self.layers) for k, s in enumerate(self.specs)]
        return TABLES["cavs"].frame(rows)


def _negatives_mode(concept: ConceptSet, requested: str) -> str:
    if requested == "auto":
        return "matched" if concept.paired and concept.counterexamples else "random"
    if requested == "matched" and not concept.counterexamples:
        raise UserInputError(f"Concept {concept.name!r} has no counterexamples for matched negatives.")
    return requested


class _Examples:
    """The unique example inputs of a run and where each concept / pool finds its own."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._index: dict[str, int] = {}

    def add(self, items: Sequence[Any], tag: str = "") -> np.ndarray:
        """Indices of `items`, adding the new ones; a `tag` keeps separate entries for the same
        inputs (their rows may be restricted, so they cannot be shared)."""
        out = []
        for x in items:
            key = f"{tag}|{x}" if isinstance(x, str) else f"{tag}|path:{x}"
            if key not in self._index:
                self._index[key] = len(self.items)
                self.items.append(x)
            out.append(self._index[key])
        return np.asarray(out, dtype=np.int64)


@dataclass
class CAVPlan:
    """Every CAV a run trains (same for all layers) and the examples they draw on."""

    examples: _Examples
    specs: list[CAVSpec]
    pool_of: dict[str, str]  # concept -> its random pool
    modes: dict[str, str]  # concept -> negatives used (random | relative | matched)
    null_of: dict[str, str]  # concept -> the cav_name of the CAVs its test compares with
    #: Matched pairs trained on their differing tokens: (example indices, counterexample indices).
    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def plan_cavs(concepts: Sequence[ConceptSet], pools: dict[str, ConceptSet],
              cfg: TCAVConfig) -> CAVPlan:
    """Seeded choice of positives and negatives for every concept and random CAV."""
    rng = np.random.default_rng(cfg.seed)
    ex = _Examples()
    modes = {c.name: _negatives_mode(c, cfg.negatives) for c in concepts}
    restrict = {c.name for c in concepts if modes[c.name] == "matched" and cfg.pair_rows == "differing"}
    concept_idx = {c.name: ex.add(c.examples, "pair" if c.name in restrict else "")
                   for c in concepts}
    counter_idx = {c.name: ex.add(c.counterexamples, "pair" if c.name in restrict else "")
                   for c in concepts if c.counterexamples}
    pairs = [(concept_idx[n], counter_idx[n]) for n in sorted(restrict)]
    pool_of: dict[str, str] = {}
    for c in concepts:  # every concept's random baseline comes from its pool, whatever its negatives
        if not c.default_pool or c.default_pool not in pools:
            raise UserInputError(f"Concept {c.name!r} names the random pool "
                                 f"{c.default_pool!r}, which is not available.")
        pool_of[c.name] = c.default_pool
    pool_idx = {name: ex.add(pools[name].examples) for name in sorted(set(pool_of.values()))}

    specs: list[CAVSpec] = []
    for c in concepts:
        pos = concept_idx[c.name]
        m = len(pos)
        for r in range(cfg.num_cavs):
            if modes[c.name] == "matched":
                # Each repetition subsamples the pairs: both members of a pair go together.
                keep = rng.choice(m, size=max(2, int(round(0.8 * m))), replace=False)
                specs.append(CAVSpec(c.name, r, "concept", pos[keep], counter_idx[c.name][keep]))
                continue
            if modes[c.name] == "relative":
                others = np.concatenate([concept_idx[o.name] for o in concepts if o.name != c.name]
                                        or [np.empty(0, np.int64)])
                others = np.setdiff1d(others, pos)
                if len(others) < 2:
                    raise UserInputError("Relative negatives need at least two concepts.")
                neg = rng.choice(others, size=min(m, len(others)), replace=False)
            else:
                candidates = np.setdiff1d(pool_idx[pool_of[c.name]], pos)
                neg = rng.choice(candidates, size=min(m, len(candidates)), replace=False)
            specs.append(CAVSpec(c.name, r, "concept", pos, neg))
    n_random = max(cfg.num_random, cfg.num_null if cfg.test in NULL_TESTS else 0)
    for pool_name, idx in pool_idx.items():
        m = int(np.median([len(concept_idx[c]) for c, p in pool_of.items() if p == pool_name]))
        if len(idx) < 2 * m:
            raise UserInputError(f"Random pool {pool_name!r} has {len(idx)} examples; random CAVs "
                                 f"need at least {2 * m} (two disjoint sets of {m}).")
        for r in range(n_random):
            # Consecutive groups share a random positive set, as a concept's CAVs share theirs,
            # so the grouped test can tell the two sources of null variance apart.
            if r % NULL_GROUP == 0:
                pos = rng.choice(idx, size=m, replace=False)
            neg = rng.choice(np.setdiff1d(idx, pos), size=m, replace=False)
            specs.append(CAVSpec(f"random:{pool_name}", r, "random", pos, neg))
    null_of = {c.name: f"random:{pool_of[c.name]}" for c in concepts}
    if cfg.test in NULL_TESTS and cfg.matched_null == "sign_flip":
        for c in concepts:
            if modes[c.name] == "matched":
                specs += _sign_flip_specs(c.name, concept_idx[c.name], counter_idx[c.name],
                                          cfg.num_null, rng)
                null_of[c.name] = f"signflip:{c.name}"
    return CAVPlan(ex, specs, pool_of, modes, null_of, pairs)


def _sign_flip_specs(name: str, pos: np.ndarray, neg: np.ndarray, n: int,
                     rng: np.random.Generator) -> list[CAVSpec]:
    """Null CAVs of a matched-pair concept's own kind (docs/method.md §6): each pair's two
    members swap sides with probability 1/2, then the CAV is trained like the concept's on
    the same pairs and tokens. Consecutive groups of NULL_GROUP share one sign vector, as the
    concept's CAVs share the true one, and each subsamples the pairs as the concept's do."""
    m = len(pos)
    out = []
    for r in range(n):
        if r % NULL_GROUP == 0:
            flip = rng.random(m) < 0.5
        keep = rng.choice(m, size=max(2, int(round(0.8 * m))), replace=False)
        out.append(CAVSpec(f"signflip:{name}", r, "random", np.where(flip, neg, pos)[keep],
                           np.where(flip, pos, neg)[keep]))
    return out


def pair_row_masks(adapter: ModelAdapter, plan: CAVPlan, batch_size: int | None
                   ) -> dict[int, torch.Tensor]:
    """Per example of a restricted matched pair: which of its player tokens differ in the pair."""
    keep: dict[int, torch.Tensor] = {}
    items = plan.examples.items
    for pos, neg in plan.pairs:
        masks_a, masks_b = differing_players(adapter, [items[i] for i in pos],
                                             [items[i] for i in neg], batch_size)
        keep.update(zip(pos.tolist(), masks_a))
        keep.update(zip(neg.tolist(), masks_b))
    return keep


def example_tables(adapter: ModelAdapter, items: list[Any], layers: list[int],
                   batch_size: int | None, progress: FractionProgress | None) -> LayerTables:
    """Token activations (players only) of every example at every chosen layer, written to
    disk batch by batch (:mod:`attnxai.tcav.spill`: memory holds one batch, not the tables)."""
    writer = TableWriter(len(layers))
    offset = 0

    def tick(done: int, total: int) -> None:
        if progress:
            progress(0.3 * done / total, f"activations of {total} concept and random examples")

    # The eager pass (not the fused readout one): its sums run in one order on any number of
    # threads, so the CAVs are the same on every engine.
    for cap in adapter.capture_batches(items, grads=False, batch_size=batch_size, progress=tick):
        mask = cap.valid_mask
        idx = torch.arange(offset, offset + len(cap))[:, None].expand_as(mask)
        writer.add([cap.activations[l][mask] for l in layers], idx[mask])
        offset += len(cap)
        del cap  # before the next batch is captured, not after
    return writer.finish()


def cav_tables(adapter: ModelAdapter, plan: CAVPlan, layers: list[int], batch_size: int | None,
               activations: ActivationSource | None = None, progress: FractionProgress | None = None
               ) -> Sequence[TokenTable]:
    """The rows every CAV of `plan` trains on, one table per layer: the examples' token
    activations (from `activations`, else forward passes), matched pairs cut to the tokens
    where the pair differs."""
    if activations is None:
        tables = example_tables(adapter, plan.examples.items, layers, batch_size, progress)
    else:
        tables = activations(plan.examples.items, layers)
    if plan.pairs:
        keep = pair_row_masks(adapter, plan, batch_size)
        tables = MappedTables(tables, lambda t: t.select(keep))  # a layer at a time
    return tables


def run_tcav(adapter: ModelAdapter, inputs: Sequence[Any], target: int | str,
             concepts: Sequence[ConceptSet], pools: dict[str, ConceptSet],
             config: TCAVConfig | None = None, progress: FractionProgress | None = None,
             activations: ActivationSource | None = None,
             fit_cache: dict[Any, CAVFit] | None = None, scorer: Scorer | None = None
             ) -> TCAVResult:
    """Attention-weighted token-level TCAV of `concepts` for the class `target`.

    ``inputs`` are inputs of the target class. ``pools`` maps random-pool names to their sets;
    each concept draws random negatives and its random-vs-random CAVs from its
    ``default_pool``. ``activations`` supplies the examples' token activations (default: forward
    passes by :func:`example_tables`). CAVs do not depend on the target or its inputs, so a
    caller auditing several targets or datasets can pass one ``fit_cache`` dict to every call
    and each layer's CAVs are trained once. ``scorer`` scores the target inputs (default:
    :func:`stream_stats` on ``adapter``, batch by batch). Returns tidy DataFrames (see
    :class:`TCAVResult`).
    """
    cfg = config or TCAVConfig()
    cfg.validate()
    t0 = time.perf_counter()
    target_idx = adapter.label_index(target)
    target_name = adapter.labels[target_idx]
    layers = list(range(adapter.num_layers)) if cfg.layers is None else list(cfg.layers)
    bad = [l for l in layers if not 0 <= l < adapter.num_layers]
    if bad or not layers:
        raise UserInputError(f"Unknown layer(s) {bad or layers}: this model has layers "
                             f"0..{adapter.num_layers - 1}.")
    if len(inputs) < cfg.min_inputs:
        raise UserInputError(f"Only {len(inputs)} inputs of class {target_name!r}; TCAV needs at "
                             f"least {cfg.min_inputs}.")
    if not concepts:
        raise UserInputError("No concepts to test.")
    for c in [*concepts, *pools.values()]:
        if c.modality != adapter.modality:
            raise UserInputError(f"Concept set {c.name!r} is {c.modality} but the model is "
                                 f"{adapter.modality}.")
    pooling = cfg.pooling or adapter.pooling
    plan = plan_cavs(concepts, pools, cfg)
    specs, pool_of, modes, null_of = plan.specs, plan.pool_of, plan.modes, plan.null_of

    # -- (1) example activations, (2) CAVs ---------------------------------------------------------
    cache = {} if fit_cache is None else fit_cache
    key = _fit_key(concepts, pools, cfg)
    missing = [l for l in layers if (key, l) not in cache]
    tables = cav_tables(adapter, plan, missing, cfg.batch_size, activations, progress) if missing else []
    t_examples = time.perf_counter()
    for j, l in enumerate(missing):
        table = tables[j]  # one layer's rows in memory at a time
        if cfg.cav == "pattern":
            fit = train_pattern_cavs(table, specs, seed=cfg.seed, holdout=cfg.holdout,
                                     device=adapter.device)
        else:
            fit = train_cavs(table, specs, seed=cfg.seed, l2=cfg.l2, holdout=cfg.holdout,
                             device=adapter.device)
        fit.gaps = projection_gaps(table, specs, fit.directions)
        del table
        release_freed_memory()  # the layer's rows and the solver's work space
        cache[(key, l)] = fit
        if progress:
            progress(0.3 + 0.3 * (j + 1) / len(missing), f"trained {len(specs)} CAVs at layer {l}")
    del tables
    fits = [cache[(key, l)] for l in layers]
    t_cavs = time.perf_counter()
    directions = torch.stack([f.directions for f in fits])  # [L, K, d]

    # -- (3) S(x) for all layers x CAVs, streamed into sufficient statistics ---------------------
    weightings = cfg.weightings()

    def tick(done: int, total: int) -> None:
        if progress:
            progress(0.6 + 0.35 * done / total, f"gradients of {total} inputs of {target_name!r}")

    score = scorer or (lambda **kw: stream_stats(adapter, **kw))
    stats, scoring_s = score(
        inputs=list(inputs), target_idx=target_idx, directions=directions, layers=layers,
        pooling=pooling, weightings=weightings, per_cav=cfg.per_cav_scores,
        groups=concept_groups([s.kind for s in specs], [s.name for s in specs]),
        batch_size=cfg.batch_size, progress=tick)
    t_scored = time.perf_counter()

    # -- (4) tables and statistics ---------------------------------------------------------------
    result = _tables(target_name, concepts, specs, layers, fits, directions, stats, weightings,
                     pool_of, modes, null_of, cfg, n_inputs=len(inputs))
    result.gaps = torch.stack([f.gaps for f in fits])
    result.config = {**asdict(cfg), "layers": layers, "pooling": pooling, "target": target_name}
    result.timings = {
        "example_activations_s": t_examples - t0,
        "cav_training_s": t_cavs - t_examples,
        "target_capture_s": t_scored - t_cavs - scoring_s,
        "scoring_s": scoring_s,
        "total_s": time.perf_counter() - t0,
        "num_cavs_per_layer": len(specs),
    }
    if progress:
        progress(1.0, "done")
    return result


def _fit_key(concepts: Sequence[ConceptSet], pools: dict[str, ConceptSet], cfg: TCAVConfig
             ) -> tuple:
    """Everything a layer's CAVs depend on besides the layer (not the target, not the inputs)."""
    sets = tuple((c.name, c.version_hash()) for c in [*concepts, *pools.values()])
    n_null = cfg.num_null if cfg.test in NULL_TESTS else 0
    return (sets, cfg.seed, cfg.num_cavs, cfg.num_random, n_null, cfg.negatives, cfg.pair_rows,
            cfg.l2, cfg.holdout, cfg.cav, cfg.matched_null)


def apply_correction(summary: pd.DataFrame, correction: str, alpha: float) -> pd.DataFrame:
    """Adjust p-values across every test in `summary` and mark significance.

    Unreliable layers (CAV accuracy below the threshold) and layers no gradient reaches (not
    testable) take part in the correction but are never marked significant. Use this after
    concatenating several targets' summaries so the correction spans the whole audit.
    """
    out = summary.copy()
    out["p_adjusted"] = adjust_frame(out, correction)
    testable = out["testable"] if "testable" in out else True
    out["significant"] = out["reliable"] & testable & (out["p_adjusted"] < alpha)
    out["correction"] = correction
    return out


def target_inputs(items: Sequence[Any], labels: Sequence[str] | None, adapter: ModelAdapter,
                  target: int | str, batch_size: int | None = None) -> tuple[list[Any], str]:
    """The inputs of class `target`: by gold label when the data has labels naming the class,
    else by the model's prediction. Returns the inputs and which rule picked them."""
    name = adapter.labels[adapter.label_index(target)]
    predicted = None
    if not labels_name_class(labels, name):
        predicted = [adapter.labels[p] for p in
                     adapter.predict(list(items), batch_size=batch_size).argmax(1).tolist()]
    indices, rule = target_indices(labels, predicted, name)
    return [items[i] for i in indices], rule


def labels_name_class(labels: Sequence[str] | None, name: str) -> bool:
    """Whether gold labels exist and name the class (then they, not predictions, select inputs)."""
    return labels is not None and name in set(labels)


def target_indices(labels: Sequence[str] | None, predicted: Sequence[str] | None,
                   name: str) -> tuple[list[int], str]:
    """Positions of the inputs of class `name`: by gold label when the labels name the class,
    else by predicted label (``predicted`` is then required). Returns them and the rule used."""
    if labels_name_class(labels, name):
        return [i for i, y in enumerate(labels) if y == name], "label"
    if predicted is None:
        raise ValueError("predicted labels are needed when the gold labels do not name the class")
    return [i for i, p in enumerate(predicted) if p == name], "prediction"


def _tables(target: str, concepts: Sequence[ConceptSet], specs: list[CAVSpec], layers: list[int],
            fits: list, directions: torch.Tensor, stats: ScoreStats, weightings: list[str],
            pool_of: dict[str, str], modes: dict[str, str], null_of: dict[str, str],
            cfg: TCAVConfig, n_inputs: int) -> TCAVResult:
    spec_df = pd.DataFrame({"cav_name": [s.name for s in specs], "rep": [s.rep for s in specs],
                            "kind": [s.kind for s in specs]})
    groups = concept_groups(spec_df["kind"].tolist(), spec_df["cav_name"].tolist()).numpy()
    per_input, per_cav = stats.input_values()  # [W, L, C, N, 3], [W, L, Kc, N] or None
    per_input, n = per_input.numpy(), per_input.shape[3]
    tcav, magnitude, derivative = (v.numpy() for v in (stats.tcav(), stats.magnitude(),
                                                       stats.derivative()))
    group_names = spec_df["cav_name"].to_numpy()[groups[:, 0]]
    cav_k = groups.reshape(-1)
    acc_rows, cav_rows, summary_rows, input_rows = [], [], [], []
    for j, l in enumerate(layers):
        acc_rows.append(spec_df.assign(layer=l, accuracy=fits[j].accuracy.numpy(),
                                       train_accuracy=fits[j].train_accuracy.numpy()))
        for i, w in enumerate(weightings):
            cav_rows.append(spec_df.assign(layer=l, weighting=w, tcav=tcav[i, j],
                                           magnitude=magnitude[i, j], derivative=derivative[i, j]))
            summary_rows.append(pd.DataFrame({
                "concept": np.repeat(group_names, n), "layer": l, "weighting": w,
                "input_index": np.tile(np.arange(n), len(group_names)),
                **{name: per_input[i, j, :, :, q].reshape(-1) for q, name in enumerate(PER_INPUT)},
                "num_cavs": groups.shape[1]}))
            if per_cav is not None:
                input_rows.append(pd.DataFrame({
                    "concept": np.repeat(spec_df["cav_name"].to_numpy()[cav_k], n),
                    "rep": np.repeat(spec_df["rep"].to_numpy()[cav_k], n),
                    "layer": l, "weighting": w, "input_index": np.tile(np.arange(n), len(cav_k)),
                    "score": per_cav[i, j].numpy().reshape(-1)}))
    cav_accuracy = pd.concat(acc_rows, ignore_index=True).assign(target=target)
    cav_scores = pd.concat(cav_rows, ignore_index=True).assign(target=target)
    input_summary = pd.concat(summary_rows, ignore_index=True).assign(target=target)
    input_scores = (pd.concat(input_rows, ignore_index=True).assign(target=target) if input_rows
                    else TABLES["input_scores"].frame([], exclude=("dataset",)))

    rows = []
    for c in concepts:
        rand_name = f"random:{pool_of[c.name]}"
        for l in layers:
            acc = cav_accuracy[(cav_accuracy.cav_name == c.name) & (cav_accuracy.layer == l)]
            for w in weightings:
                sel = (cav_scores.layer == l) & (cav_scores.weighting == w)
                con = cav_scores[sel & (cav_scores.cav_name == c.name)]
                rnd = cav_scores[sel & (cav_scores.cav_name == rand_name)]
                base = rnd[rnd.rep < cfg.num_random]
                stat = cfg.statistic
                null = rnd if cfg.test in NULL_TESTS else base
                shared = "both" if modes[c.name] == "matched" else "positives"
                if null_of[c.name] != rand_name:
                    # Sign-flip CAVs share a sign vector per group as the concept's CAVs share
                    # the true signs, and resample pairs as they do.
                    null = cav_scores[sel & (cav_scores.cav_name == null_of[c.name])]
                    shared = "positives"
                p = p_value(con[stat].to_numpy(), null.sort_values("rep")[stat].to_numpy(),
                            cfg.test, STATISTICS[stat], shared)
                # No gradient reaches the players at this layer (the last block of a
                # [CLS]-read ViT): every derivative is exactly 0 and nothing can be tested.
                testable = bool((con.derivative != 0).any() or (null.derivative != 0).any())
                rows.append({
                    "target": target, "concept": c.name, "layer": l, "weighting": w,
                    "mean": con.tcav.mean(), "std": con.tcav.std(ddof=1),
                    "magnitude_mean": con.magnitude.mean(), "magnitude_std": con.magnitude.std(ddof=1),
                    "random_mean": base.tcav.mean(), "random_std": base.tcav.std(ddof=1),
                    "random_magnitude_mean": base.magnitude.mean(),
                    "derivative_mean": con.derivative.mean(),
                    "null_derivative_std": null.derivative.std(ddof=1),
                    "p_value": p, "cav_accuracy": acc.accuracy.mean(),
                    "cav_accuracy_std": acc.accuracy.std(ddof=1),
                    "n_inputs": n_inputs, "num_cavs": len(con), "num_random": len(base),
                    "num_null": len(rnd) if cfg.test in NULL_TESTS else 0,
                    "negatives": modes[c.name], "random_pool": pool_of[c.name],
                    "null_cavs": null_of[c.name] if cfg.test in NULL_TESTS else rand_name,
                    "test": cfg.test, "statistic": cfg.statistic, "correction": cfg.correction,
                    "testable": testable})
    summary = pd.DataFrame(rows)
    summary["reliable"] = summary["cav_accuracy"] >= cfg.min_accuracy
    summary["direction"] = np.where(summary["mean"] > 0.5, "positive",
                                    np.where(summary["mean"] < 0.5, "negative", "none"))
    summary = apply_correction(summary, cfg.correction, cfg.alpha)
    # The tables' columns, order and dtypes are the results schema's (the audit adds `dataset`).
    tables = {name: TABLES[name].frame(frame, exclude=("dataset",)) for name, frame in (
        ("summary", summary), ("cav_scores", cav_scores), ("input_summary", input_summary),
        ("input_scores", input_scores), ("cav_accuracy", cav_accuracy))}
    return TCAVResult(**tables, specs=specs, layers=layers, directions=directions)

"""An audit run: one model, one or more datasets, target classes and concepts -> a stored run.

:func:`validate_audit` loads and checks everything (model, classes, layers, concepts and their
pools, datasets and the inputs of every target) and raises :class:`UserInputError` on the first
problem. :func:`run_audit` records the run as ``running`` at once (a validation error removes
it again), validates, fills in what the run uses, runs TCAV for every
dataset x target (concept and random-pool activations computed once, through the store's
activation cache), corrects p-values across the whole run, and writes all results in the
transaction that marks the run ``completed``. On an exception the run is marked ``failed``
with the error and the exception propagates; on cancellation it is marked ``cancelled`` and
:class:`AuditCancelled` is raised. Neither leaves result rows. The audit is described by an
:class:`attnxai.audit.config.AuditConfig`; the run stores it resolved against the model, with
every CAV it trained (the ``cavs`` table, once per run).
"""

from __future__ import annotations

import logging
import platform
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from attnxai.audit.actcache import CachedActivations, model_hash
from attnxai.audit.config import DEMO, AuditConfig
from attnxai.audit.engines import Engine, ModelRef
from attnxai.audit.engines.local import LocalEngine
from attnxai.audit.progress import (ANALYSED, EXAMPLES, EFFECTS_SHARE, PREDICTED, AuditCancelled,
                                    Steps, TimeLeft, audit_work, time_interventions)
from attnxai.audit.records import RunConcept, RunDataset
from attnxai.io.concepts import ConceptSet, load_audit_concepts
from attnxai.io.datasets import Dataset, demo_dataset, load_dataset
from attnxai.errors import UserInputError
from attnxai.models.base import ModelAdapter
from attnxai.models.patching import layer_work
from attnxai.audit.store import Store
from attnxai.effects.intervention import Recordings
from attnxai.effects.run import by_pairs, intervention_rows, pair_effects
from attnxai.effects.table import correct_effects, effect_frame
from attnxai.schema import TABLES
from attnxai.tcav.run import (FractionProgress, Scorer, TCAVResult, apply_correction, plan_cavs,
                              labels_name_class, run_tcav, target_indices)

log = logging.getLogger(__name__)
_VERSIONED = ("attnxai", "torch", "transformers", "timm", "numpy", "scipy", "pandas", "duckdb")


@dataclass
class AuditDataset:
    """One dataset of an audit: its name in the results, and the inputs of each target."""

    name: str  # the `dataset` column: "demo" or the file/folder name (made unique)
    data: Dataset
    predictions: list[str]
    probabilities: list[float]
    selected: dict[str, tuple[list[int], str]]  # target -> (item indices, rule)


@dataclass
class PreparedAudit:
    """A validated audit, ready to run: everything loaded and checked. ``config`` is the
    given one resolved against the model: targets by their class names, the layers and the
    pooling spelled out (as the run stores it)."""

    config: AuditConfig
    adapter: ModelAdapter
    targets: list[str]
    datasets: list[AuditDataset]
    concepts: list[ConceptSet]
    pools: dict[str, ConceptSet]


def _load_datasets(config: AuditConfig, adapter: ModelAdapter) -> list[tuple[str, Dataset]]:
    out, names = [], set()
    for spec in config.datasets:
        ds = demo_dataset(adapter.modality) if spec == DEMO else load_dataset(spec)
        if ds.modality != adapter.modality:
            raise UserInputError(f"Dataset {spec} holds {ds.modality} data but {config.model} is a "
                                 f"{adapter.modality} model.")
        if len(ds) == 0:
            raise UserInputError(f"Dataset {spec} is empty.")
        name = DEMO if spec == DEMO else Path(spec).name
        base, k = name, 2
        while name in names:  # two files of the same name in different folders
            name, k = f"{base}#{k}", k + 1
        names.add(name)
        out.append((name, ds))
    return out


def validate_audit(config: AuditConfig, adapter: ModelAdapter | None = None,
                   progress: FractionProgress | None = None) -> PreparedAudit:
    """Load and check everything an audit needs; raise UserInputError on the first problem.

    Loads the model (unless ``adapter`` is given), checks classes, layers, concepts and pools
    (modality, pool sizes) and datasets (modality, non-empty), predicts every dataset's
    inputs and checks each target has enough inputs in each dataset. Nothing is written.
    """
    from attnxai.models import load_model

    config.validate()
    batch_size = config.tcav.batch_size
    if adapter is None:
        adapter = load_model(config.model, device=config.device, labels=config.labels,
                             batch_size=32 if batch_size is None else batch_size,
                             trust_remote_code=config.trust_remote_code, dtype=config.dtype)
    if config.labels is not None and not adapter.takes_label_descriptions:
        raise UserInputError(f"{adapter.spec} does not take label descriptions; leave labels "
                             "out for it.")
    targets = [adapter.labels[adapter.label_index(t)] for t in config.targets]
    if len(set(targets)) < len(targets):
        raise UserInputError("targets name the same class more than once.")
    given = config.tcav.layers
    layers = list(range(adapter.num_layers)) if given is None else list(given)
    bad = [l for l in layers if not isinstance(l, int) or not 0 <= l < adapter.num_layers]
    if bad:
        raise UserInputError(f"Unknown layer(s) {bad}: this model has layers "
                             f"0..{adapter.num_layers - 1}.")
    if config.effects.patching or config.effects.interventions:
        adapter.block_modules()  # layer by layer edits need separate blocks: fail before work
    # Resolved against the model, so the stored config says exactly what ran.
    tcav = replace(config.tcav, layers=tuple(layers),
                   pooling=config.tcav.pooling or adapter.pooling)
    config = replace(config, targets=tuple(targets), tcav=tcav)
    concepts, pools = load_audit_concepts(list(config.concepts), config.concept_dir,
                                          adapter.modality)
    plan = plan_cavs(concepts, pools, tcav)  # pool sizes, matched/relative negatives: fail now

    datasets = []
    loaded = _load_datasets(config, adapter)
    if isinstance(progress, Steps):  # size the bar's stages before the first prediction
        progress.plan(audit_work(config, adapter, plan, concepts, [(ds, None) for _, ds in loaded]))
    n_items = sum(len(ds) for _, ds in loaded)
    for k, (name, ds) in enumerate(loaded):
        before = sum(len(d) for _, d in loaded[:k])

        def tick(done: int, total: int, before: int = before, name: str = name) -> None:
            if progress:
                progress((before + done) / n_items * PREDICTED,
                         f"predicting {name} ({before + done}/{n_items} inputs)")
        probs = adapter.predict(ds.items, batch_size=batch_size, progress=tick)
        top = probs.max(1)
        predictions = [adapter.labels[i] for i in top.indices.tolist()]
        selected = {}
        for t in targets:
            idx, rule = target_indices(ds.labels, predictions, t)
            if len(idx) < tcav.min_inputs:
                how = "labelled" if labels_name_class(ds.labels, t) else "predicted as"
                raise UserInputError(f"Dataset {name} has {len(idx)} inputs {how} {t!r}; TCAV "
                                     f"needs at least {tcav.min_inputs}.")
            selected[t] = (idx[: config.limit] if config.limit else idx, rule)
        datasets.append(AuditDataset(name, ds, predictions, top.values.tolist(), selected))
    return PreparedAudit(config, adapter, targets, datasets, concepts, pools)


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries an audit's numbers depend on."""
    out = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random hex."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:8]


def _input_name(ds: AuditDataset, i: int) -> str:
    """How the drill-down finds input i: the text, the image path, or (for images held in
    memory, e.g. from a zip) the dataset source and the item's position."""
    x = ds.data.items[i]
    if isinstance(x, str):
        return x
    return str(x) if isinstance(x, Path) else f"{ds.data.source}#{i}"


def _with_dataset(result: TCAVResult, name: str) -> dict[str, pd.DataFrame]:
    tables = {"summary": result.summary, "cav_scores": result.cav_scores,
              "cav_accuracy": result.cav_accuracy, "input_summary": result.input_summary,
              "input_scores": result.input_scores}
    return {k: v.assign(dataset=name) for k, v in tables.items()}


def _execute(prep: PreparedAudit, steps: Steps, acts: CachedActivations,
             scorer: Scorer | None = None) -> dict[str, pd.DataFrame]:
    """TCAV for every dataset x target (target inputs scored by ``scorer``: an engine's); the
    result tables of the whole run."""
    pairs = [(ds, t) for ds in prep.datasets for t in prep.targets]
    tcav = prep.config.tcav
    steps.stage(PREDICTED, EXAMPLES, "concept and random-pool activations")
    layers = list(tcav.layers)
    acts(_plan_items(prep), layers)  # once for the whole run; each run_tcav reuses it
    parts: dict[str, list[pd.DataFrame]] = {}
    inputs = []
    cavs = None
    fits: dict = {}  # every dataset x target shares the run's CAVs: trained once per layer
    ecfg = prep.config.effects
    effects_share = 0.0 if ecfg.level == "none" else EFFECTS_SHARE
    span = (ANALYSED - EXAMPLES) * (1 - effects_share) / len(pairs)
    results = []
    for k, (ds, target) in enumerate(pairs):
        idx, rule = ds.selected[target]
        steps.stage(EXAMPLES + k * span, EXAMPLES + (k + 1) * span, f"{ds.name} / {target}")
        result = run_tcav(prep.adapter, [ds.data.items[i] for i in idx], target, prep.concepts,
                          prep.pools, tcav, progress=steps, activations=acts, fit_cache=fits,
                          scorer=scorer)
        results.append((ds, target, [ds.data.items[i] for i in idx], result))
        if cavs is None:  # the same CAVs for every dataset x target: stored once
            cavs = result.cav_table()
        for name, frame in _with_dataset(result, ds.name).items():
            parts.setdefault(name, []).append(frame)
        inputs.append(TABLES["inputs"].frame(pd.DataFrame({
            "dataset": ds.name, "target": target, "input_index": range(len(idx)),
            "item_index": idx, "input": [_input_name(ds, i) for i in idx],
            "label": [ds.data.labels[i] for i in idx] if ds.data.labels else None,
            "prediction": [ds.predictions[i] for i in idx],
            "probability": [ds.probabilities[i] for i in idx], "selected_by": rule})))
    tables = {name: TABLES[name].frame(pd.concat(frames, ignore_index=True))
              for name, frames in parts.items()}
    # One family of tests per run: correct across every dataset, target, concept and layer.
    tables["summary"] = apply_correction(tables["summary"], tcav.correction, tcav.alpha)
    tables["inputs"] = pd.concat(inputs, ignore_index=True)
    tables["cavs"] = cavs
    lo = EXAMPLES + (ANALYSED - EXAMPLES) * (1 - effects_share)
    tables["effects"], tables["pair_effects"] = _effects(prep, results, steps, lo, ANALYSED)
    return tables


def _effects(prep: PreparedAudit, results: list, steps: Steps, lo: float, hi: float
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Causal effects (docs/method.md §6): output effects and layer-wise patching of every
    paired concept for every target, and with ``effects="all"`` CAV interventions of the other
    concepts on each dataset x target's inputs. Corrected together across the run."""
    cfg, tcav, adapter = prep.config.effects, prep.config.tcav, prep.adapter
    rows: list[dict[str, Any]] = []
    per_pair: list[pd.DataFrame] = []
    if cfg.level == "none":
        return effect_frame(rows), TABLES["pair_effects"].frame([])
    paired, unpaired = by_pairs(prep.concepts, cfg)
    jobs = len(paired) + len(unpaired) * len(results)
    step = (hi - lo) / max(jobs, 1)
    for k, c in enumerate(paired):
        steps.stage(lo + k * step, lo + (k + 1) * step, f"effects of {c.name}'s pairs")
        pe = pair_effects(adapter, c.name, c.examples, c.counterexamples, prep.targets, cfg,
                          tcav.layers, seed=tcav.seed, batch_size=tcav.batch_size,
                          progress=lambda done, total: steps(done / total,
                                                              f"{int(done)}/{total} pairs"))
        rows += pe.rows
        frame = pe.per_pair(adapter.labels, prep.targets)
        frame["example"] = [_item_name(c.examples[i]) for i in frame["pair"]]
        frame["counterexample"] = [_item_name(c.counterexamples[i]) for i in frame["pair"]]
        per_pair.append(frame)
    k = len(paired)
    for ds, target, inputs, result in results:
        # Layer j's share of a concept's interventions: by the blocks its edits rerun.
        done = np.cumsum([0.0, *layer_work(result.layers, adapter, shifts=True)])
        recordings: Recordings = {}  # the target inputs' plain pass, once for every concept
        for c in unpaired:
            steps.stage(lo + k * step, lo + (k + 1) * step,
                        f"CAV interventions of {c.name} on {ds.name} / {target}")
            k += 1
            rows += intervention_rows(
                adapter, inputs, target, c.name, c.default_pool, result.specs, result.layers,
                result.directions, result.gaps, cfg, ds.name, tcav.batch_size,
                lambda x: steps(float(np.interp(x, range(len(done)), done)) / done[-1],
                                f"layer {result.layers[min(int(x), len(result.layers) - 1)]}"),
                recordings)
    effects = correct_effects(effect_frame(rows), tcav.correction, tcav.alpha)
    return effects, TABLES["pair_effects"].frame(pd.concat(per_pair, ignore_index=True)
                                                 if per_pair else [])


def _item_name(x: Any) -> str:
    """A pair member as the store records it: the text, or the image file's absolute path."""
    if isinstance(x, str):
        return x
    return str(Path(x).resolve()) if isinstance(x, Path) else "(an image held in memory)"


def _plan_items(prep: PreparedAudit) -> list[Any]:
    return plan_cavs(prep.concepts, prep.pools, prep.config.tcav).examples.items


def _end(store: Store, run_id: str, status: str, error: str, t0: float) -> None:
    """Record how a run ended without hiding the exception that ended it."""
    try:
        store.end_run(run_id, status, error, time.perf_counter() - t0)
    except Exception:  # e.g. the file stayed locked: the original error matters more
        log.exception("could not mark audit run %s %s", run_id, status)


@contextmanager
def _ending(store: Store, run_id: str, t0: float,
            spare: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Within: an exception marks run ``run_id`` cancelled or failed, then goes on; those in
    ``spare`` are left to the caller."""
    try:
        yield
    except spare:
        raise
    except AuditCancelled:
        _end(store, run_id, "cancelled", "cancelled by the user", t0)
        raise
    except KeyboardInterrupt:
        _end(store, run_id, "cancelled", "interrupted", t0)
        raise
    except BaseException as exc:
        _end(store, run_id, "failed", f"{type(exc).__name__}: {exc}", t0)
        raise


def run_audit(config: AuditConfig, store: Store, progress: FractionProgress | None = None,
              cancel: threading.Event | None = None, adapter: ModelAdapter | None = None,
              use_cache: bool = True, engine: Engine | None = None,
              time_left: TimeLeft | None = None) -> str:
    """Validate, run and store an audit; return its run id.

    ``progress(fraction, message)`` is called throughout; setting ``cancel`` stops the run
    within one batch (prediction included), marks it ``cancelled`` and raises
    :class:`AuditCancelled`. Any other exception marks it ``failed`` (with the message) and
    propagates. The run is recorded as ``running`` at once, before the model and the data
    load (:meth:`Store.describe_run` fills in their hashes once known); a validation error
    (:class:`UserInputError` from :func:`validate_audit`) removes that row again, so it leaves
    no run behind. ``use_cache=False`` neither reads nor writes the activation cache.
    ``engine`` runs the example and target passes (:mod:`attnxai.audit.engines`; default:
    local); the caller closes it. The results do not depend on it. ``time_left(seconds)``
    hears the run's estimate of the seconds it has left with every progress report
    (:class:`attnxai.audit.progress.Steps`; None until a first rate is measured).
    """
    config.validate()  # a bad option fails before anything is written
    run_id = new_run_id()
    t0 = time.perf_counter()
    store.start_run(run_id, model=adapter.spec if adapter is not None else config.model,
                    model_hash="", datasets=[], targets=list(config.targets),
                    concepts=[RunConcept(c, "", "concept") for c in config.concepts],
                    config=config, library_versions=library_versions())
    steps = Steps(run_id, progress, cancel, time_left)
    try:
        with _ending(store, run_id, t0, spare=(UserInputError,)):
            steps.stage(0.0, 1.0, "")  # validate_audit reports on the run's scale
            steps(0.0, f"loading {config.model}" if adapter is None
                  else "reading the concept sets and the data")
            prep = validate_audit(config, adapter, steps)
    except UserInputError:
        try:  # a run that could not start leaves no row
            store.delete_run(run_id)
        except Exception:  # noqa: BLE001 - the validation error matters more
            log.exception("could not remove audit run %s", run_id)
        raise
    with _ending(store, run_id, t0):
        adapter = prep.adapter
        steps(0.0, "recording the model, data and concept versions")
        mhash = model_hash(adapter)
        store.record_model(mhash, adapter.spec, adapter.modality, adapter.num_layers,
                           adapter.labels, adapter.card)
        ds_rows = []
        for ds in prep.datasets:
            dhash = ds.data.content_hash()
            store.record_dataset(dhash, ds.data.name, ds.data.source, ds.data.modality,
                                 len(ds.data), ds.data.labels is not None)
            ds_rows.append(RunDataset(ds.name, dhash, ds.data.source, len(ds.data)))
        concept_rows = [RunConcept(c.name, store.record_concept_set(c), role)
                        for role, sets in (("concept", prep.concepts),
                                           ("pool", prep.pools.values()))
                        for c in sets]
        store.describe_run(run_id, model=adapter.spec, model_hash=mhash, datasets=ds_rows,
                           targets=prep.targets, concepts=concept_rows, config=prep.config)
        # The exact inputs of every target are known now: re-share the rest of the bar.
        steps.plan(audit_work(prep.config, adapter, plan_cavs(prep.concepts, prep.pools,
                                                         prep.config.tcav),
                         prep.concepts, [(ds.data, ds.selected) for ds in prep.datasets]))
        if by_pairs(prep.concepts, prep.config.effects)[1]:
            ds, target = prep.datasets[0], prep.targets[0]
            steps(0.0, "timing a CAV intervention pass")
            start = time.perf_counter()
            sample = time_interventions(
                adapter, [ds.data.items[i] for i in ds.selected[target][0]], target, prep.config)
            steps.calibrate("intervention", *sample, took=time.perf_counter() - start)
        engine = engine or LocalEngine()
        engine.bind(adapter, ModelRef(adapter.spec, adapter.batch_size, prep.config.labels,
                                      prep.config.trust_remote_code, prep.config.dtype))
        acts = CachedActivations(store if use_cache else None, adapter, mhash,
                                 prep.config.tcav.batch_size, progress=steps,
                                 compute=engine.example_tables())
        tables = _execute(prep, steps, acts, engine.scorer())
        steps.stage(0.95, 1.0, "saving results")
        steps.check()  # the last moment a cancel applies; after this the run completes
        store.complete_run(run_id, tables, time.perf_counter() - t0,
                           activations_cached=acts.cached, activations_computed=acts.computed)
    if progress:
        progress(1.0, "done")
    return run_id

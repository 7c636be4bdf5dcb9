"""CSV reports of stored audit runs (column meanings: README, "Audit store and CSV export").

- summary CSV: one row per dataset x target x concept x layer x weighting with the statistics,
  CAV accuracy and the run's config columns (:func:`summary_frame`);
- detail CSV (optional): one row per input x concept x layer x weighting with the mean score
  over the concept's CAVs, the share of CAVs scoring it positive, and the input itself
  (:func:`detail_frame`).
Files are written to a temporary name and renamed, so a reader never sees half a CSV, and cells a
spreadsheet would run as formulas are neutralised (:mod:`attnxai.io.outputs`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from attnxai.audit.records import RunRecord
from attnxai.errors import UserInputError
from attnxai.audit.store import Store
from attnxai.audit.verdicts import with_relevance
from attnxai.io.outputs import check_outputs, csv_bytes, store_files, write_atomic
from attnxai.schema import INPUT_DETAIL, RELEVANCE, RUN_CONTEXT, TABLES


def completed_run(store: Store, run_id: str) -> RunRecord:
    """The run ``run_id``; UserInputError (exit 2) when it is unknown or did not complete."""
    run = store.get_run(run_id)
    if not run.completed:
        reason = f": {run.error}" if run.error else ""
        raise UserInputError(f"Run {run_id} is {run.status}{reason}; only completed runs have "
                             "results to export.")
    return run


def summary_frame(store: Store, run_id: str) -> pd.DataFrame:
    """The run's tidy summary plus each row's relevance (:data:`attnxai.schema.RELEVANCE`)
    and its run columns (:data:`attnxai.schema.RUN_CONTEXT`): ``run_id`` first, the summary's
    own columns, the relevance, then the rest."""
    run = completed_run(store, run_id)
    summary = with_relevance(store.summary(run_id), store.results("effects", run_id))
    hashes = {d.dataset: d.dataset_hash for d in run.dataset_details}
    versions = {c.name: c.version_hash for c in run.concept_versions}
    tcav = run.config.tcav
    context = {
        "run_id": run_id, "created": run.created, "model": run.model,
        "model_hash": run.model_hash, "dataset_hash": summary["dataset"].map(hashes),
        "concept_version": summary["concept"].map(versions), "seed": run.seed,
        "alpha": tcav.alpha, "min_accuracy": tcav.min_accuracy,
        "layers": ",".join(str(l) for l in tcav.layers or ()),
        "attnxai_version": run.library_versions.get("attnxai", "")}
    summary = summary.assign(**context)
    return summary[[RUN_CONTEXT[0], *TABLES["summary"].names(), *RELEVANCE, *RUN_CONTEXT[1:]]]


def detail_frame(store: Store, run_id: str) -> pd.DataFrame:
    """Per-input detail of a completed run (see :meth:`Store.input_detail`), ``run_id`` first."""
    completed_run(store, run_id)
    return store.input_detail(run_id).assign(run_id=run_id)[["run_id", *INPUT_DETAIL]]


def detail_path(out: str | Path) -> Path:
    """Where :func:`export_run` writes the detail CSV beside ``out``: ``<stem>.detail.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.detail.csv")


def effects_path(out: str | Path) -> Path:
    """Where :func:`export_run` writes the causal-effects CSV beside ``out``:
    ``<stem>.effects.csv``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.effects.csv")


def effects_frame(store: Store, run_id: str) -> pd.DataFrame:
    """The causal effects of a completed run (:data:`attnxai.schema.TABLES` ``effects``),
    ``run_id`` first; empty for a run that computed none."""
    completed_run(store, run_id)
    effects = store.results("effects", run_id)
    return effects.assign(run_id=run_id)[["run_id", *TABLES["effects"].names()]]


def summary_csv_bytes(store: Store, run_id: str) -> bytes:
    """The summary CSV as bytes (for a download button), formulas neutralised."""
    return csv_bytes(summary_frame(store, run_id))


def detail_csv_bytes(store: Store, run_id: str) -> bytes:
    """The per-input CSV as bytes (for a download button), formulas neutralised."""
    return csv_bytes(detail_frame(store, run_id))


def export_paths(out: str | Path, effects: bool, detail: bool) -> list[Path]:
    """The files :func:`export_run` writes for ``out``: the summary CSV, the causal effects'
    (``effects``: the run computed some) and the per-input CSV (``detail``)."""
    return ([Path(out)] + ([effects_path(out)] if effects else [])
            + ([detail_path(out)] if detail else []))


def export_run(store: Store, run_id: str, out: str | Path, detail: bool = False) -> Path:
    """Write the summary CSV to ``out``, the causal effects to :func:`effects_path` (when the
    run computed any), and with ``detail`` the per-input CSV to :func:`detail_path`; return
    ``out``. Every path is checked (:func:`attnxai.io.outputs.check_outputs`: never the store
    itself, nor a special file) and everything read before anything is written, and each file
    appears complete or not at all, with formulas neutralised."""
    effects = completed_run(store, run_id).config.effects.level != "none"
    paths = check_outputs(export_paths(out, effects, detail), example="audit.csv",
                          protect=store_files(store.path))
    frames = [summary_frame(store, run_id)]
    if effects:
        frames.append(effects_frame(store, run_id))
    if detail:
        frames.append(detail_frame(store, run_id))
    for path, frame in zip(paths, frames):
        write_atomic(path, csv_bytes(frame))
    return paths[0]

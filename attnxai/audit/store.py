"""The audit store: one DuckDB file holding every audit run, its results and an activation cache.

Schema (version :data:`SCHEMA_VERSION`, see the README's "Audit store and CSV export"):

- ``meta`` (schema version), ``models`` (spec, content hash, card), ``datasets`` (source,
  content hash, size), ``concept_sets`` (name, version hash, examples);
- ``runs`` (id, created, status running/completed/failed/cancelled, error, config JSON, seed,
  library versions, duration) with ``run_datasets`` and ``run_concepts`` (what exactly it used);
- results, all keyed by ``run_id`` and declared once in :data:`attnxai.schema.TABLES`:
  ``summary`` (one row per dataset x target x concept x layer x weighting), ``cav_scores``,
  ``cav_accuracy``, ``input_summary`` (per input: S(x) over each concept's CAVs),
  ``input_scores`` (each CAV's S(x), on request), ``inputs`` (the input behind each
  ``input_index``) and
  ``cavs`` (every CAV of the run per layer, once per run), ``effects`` (causal effects per
  target x concept x layer x measure) and ``pair_effects`` (each pair's output effect);
- ``activation_cache``: token activations per (model hash, example hash, layer).

Several processes share the file (dashboard and CLI), and DuckDB lets only one process open it
at a time: every operation opens a connection, does its work in one transaction and closes it.
When another process holds the file, the operation waits (with a message) and retries for a
bounded time, then raises :class:`StoreLockedError`. A run's results are written in the same
transaction that marks it completed, so no reader ever sees partial results.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import pandas as pd
import torch

from attnxai.audit.config import AuditConfig
from attnxai.audit.records import RunConcept, RunDataset, RunRecord
from attnxai.io.hashing import example_hash
from attnxai.io.concepts import ConceptSet
from attnxai.errors import UserInputError
from attnxai.schema import INPUT_DETAIL, TABLES, migration

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA_VERSION = 6
DEFAULT_LOCK_TIMEOUT_S = 60.0
DEFAULT_CACHE_MAX_BYTES = 2 * 1024**3
CACHE_MAX_BYTES_ENV = "ATTNXAI_CACHE_MAX_BYTES"
HOME_ENV = "ATTNXAI_HOME"
_CONFLICT_RETRIES = 8
# DuckDB shares one database instance between a process's connections to a file; two threads
# opening (or closing the last connection) at the same moment race on attaching the file.
_ATTACH_LOCK = threading.Lock()
_MIGRATE_LOCK = threading.Lock()

# Each step brings the schema from version i to i + 1 and runs in one transaction with the
# version bump; a fresh file runs them all, so every step is exercised on every new database.
MIGRATIONS: list[list[str]] = [
    [  # 0 -> 1: runs and their results
        """CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
        """CREATE TABLE models (model_hash VARCHAR PRIMARY KEY, spec VARCHAR, modality VARCHAR,
               num_layers INTEGER, labels JSON, card JSON, first_seen TIMESTAMP)""",
        """CREATE TABLE datasets (dataset_hash VARCHAR PRIMARY KEY, name VARCHAR, source VARCHAR,
               modality VARCHAR, n_items INTEGER, labelled BOOLEAN, first_seen TIMESTAMP)""",
        """CREATE TABLE concept_sets (name VARCHAR, version_hash VARCHAR, modality VARCHAR,
               kind VARCHAR, description VARCHAR, default_pool VARCHAR, paired BOOLEAN,
               n_examples INTEGER, n_counterexamples INTEGER, examples JSON,
               counterexamples JSON, recorded TIMESTAMP, PRIMARY KEY (name, version_hash))""",
        """CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, created TIMESTAMP, finished TIMESTAMP,
               status VARCHAR, error VARCHAR, model VARCHAR, model_hash VARCHAR,
               datasets JSON, targets JSON, concepts JSON, seed INTEGER, config JSON,
               library_versions JSON, duration_s DOUBLE)""",
        """CREATE TABLE run_datasets (run_id VARCHAR, dataset VARCHAR, dataset_hash VARCHAR,
               source VARCHAR, n_items INTEGER)""",
        """CREATE TABLE run_concepts (run_id VARCHAR, name VARCHAR, version_hash VARCHAR,
               role VARCHAR)""",
        *migration(1),  # summary, cav_scores, cav_accuracy, input_scores
    ],
    [  # 1 -> 2: drill-down inputs, the activation cache, cache statistics and the run's owner
        *migration(2),  # inputs
        """CREATE TABLE activation_cache (model_hash VARCHAR, example_hash VARCHAR,
               layer INTEGER, dtype VARCHAR, n_tokens INTEGER, dim INTEGER, data BLOB,
               created TIMESTAMP, PRIMARY KEY (model_hash, example_hash, layer))""",
        "ALTER TABLE runs ADD COLUMN activations_cached INTEGER DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN activations_computed INTEGER DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN pid INTEGER",
        "ALTER TABLE runs ADD COLUMN host VARCHAR",
    ],
    [  # 2 -> 3: each run's CAVs; seeds up to 2**32 - 1; every `seq` of one type
        "ALTER TABLE runs ALTER seed TYPE BIGINT",
        "ALTER TABLE summary ALTER seq TYPE BIGINT",
        *migration(3),  # cavs
    ],
    [*migration(4)],  # 3 -> 4: causal effects (effects, pair_effects), summary.null_cavs
    [*migration(5)],  # 4 -> 5: per-input statistics over each concept's CAVs (input_summary)
    [  # 5 -> 6: effects tested against a minimum relevant effect (older ones were tested
        # against 0, δ = 0, where nothing can be shown negligible); layers that are not testable
        *migration(6),
        "UPDATE effects SET min_effect = 0, p_negligible = 1, verdict = CASE WHEN significant "
        "THEN 'relies' ELSE 'inconclusive' END",
        # A layer of an older run is testable unless its derivatives were all exactly 0.
        "UPDATE summary SET testable = COALESCE(derivative_mean <> 0 OR null_derivative_std <> 0, "
        "true)",
    ],
]
assert len(MIGRATIONS) == SCHEMA_VERSION
assert all(t.since <= SCHEMA_VERSION for t in TABLES.values()), "a table needs its migration step"

RUN_LIST_COLUMNS = ["run_id", "status", "created", "finished", "model", "model_hash", "datasets",
                    "targets", "concepts", "seed", "duration_s", "error", "config",
                    "activations_cached", "activations_computed"]


def _insert_members(con: duckdb.DuckDBPyConnection, run_id: str,
                    datasets: Sequence[RunDataset], concepts: Sequence[RunConcept]) -> None:
    """The rows of ``run_datasets`` and ``run_concepts`` that say what run ``run_id`` uses."""
    for d in datasets:
        con.execute("INSERT INTO run_datasets VALUES (?, ?, ?, ?, ?)",
                    [run_id, d.dataset, d.dataset_hash, d.source, d.n_items])
    for c in concepts:
        con.execute("INSERT INTO run_concepts VALUES (?, ?, ?, ?)",
                    [run_id, c.name, c.version_hash, c.role])


class StoreError(UserInputError):
    """The audit database cannot be used (unreadable, newer schema, unknown run, ...)."""


class StoreLockedError(StoreError):
    """Another process kept the database file locked for longer than the store waits."""


def default_db_path() -> Path:
    """``$ATTNXAI_HOME/audits.duckdb``; ``ATTNXAI_HOME`` defaults to ``~/.attnxai``."""
    home = os.environ.get(HOME_ENV)
    return (Path(home) if home else Path.home() / ".attnxai") / "audits.duckdb"


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored as naive UTC


# DuckDB's message when another process holds the file: 'IO Error: Could not set lock on file
# "<path>": Conflicting lock is held in <program> (PID n)'. Only its start is matched: the
# path that follows may contain any word, "lock" included.
_LOCK_CONFLICT = re.compile(r'^(IO Error: )?Could not set lock on file "')
_NOT_DUCKDB = "it is not a valid DuckDB database file"
_TRUNCATED = "Could not read enough bytes"
# A DuckDB file starts with an 8-byte checksum, then the magic bytes "DUCK".
_DUCKDB_MAGIC = b"DUCK"
_HEADER_BYTES = 16
# attnxai never reaches the network and never runs code it did not ship: DuckDB must not fetch
# or load an extension when it meets a file it does not know (it would download the SQLite
# scanner for a SQLite file).
CONNECTION_CONFIG = {"autoinstall_known_extensions": False,
                     "autoload_known_extensions": False,
                     "allow_community_extensions": False}


def _is_lock_error(exc: Exception) -> bool:
    """Whether DuckDB refused to open a file because another process holds its lock."""
    return isinstance(exc, duckdb.IOException) and _LOCK_CONFLICT.match(str(exc)) is not None


def _open_error(path: Path, exc: Exception) -> StoreError:
    """The StoreError for a file DuckDB cannot open or read for a reason other than a lock."""
    if _NOT_DUCKDB in str(exc):
        return _not_a_store(path, "it is not a DuckDB database file")
    if _TRUNCATED in str(exc):
        return StoreError(f"The audit database {path} is truncated or damaged (DuckDB could not "
                          "read all of it); restore it from a backup, or give another file "
                          "(--db).")
    text = " ".join(str(exc).split())[:300]
    return StoreError(f"Cannot use the audit database {path}: {text}")


def _not_a_store(path: Path, why: str) -> StoreError:
    return StoreError(f"{path} is not an attnxai audit store ({why}); give another file name "
                      "(--db) or move that file away.")


def check_store_path(path: Path) -> None:
    """StoreError unless ``path`` can hold an audit store: an existing regular file, or a new
    path whose nearest existing ancestor is a folder (``ATTNXAI_HOME`` may name a file)."""
    if path.is_dir():
        raise StoreError(f"{path} is a folder; give the audit database's file name "
                         "(e.g. audits.duckdb).")
    if path.exists():
        check_store_file(path)
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StoreError(f"Cannot use {path}: {parent} is a file, not a folder"
                                 + (f" (check {HOME_ENV})" if os.environ.get(HOME_ENV) else "")
                                 + ".")
            return


def check_store_file(path: Path) -> None:
    """StoreError when the file at ``path`` exists and is not a DuckDB database (by its header,
    before DuckDB sees it: DuckDB would attach a SQLite or Parquet file as a database of its
    own kind) or not a regular file. A missing file is a new store."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"Cannot use the audit database {path}: {exc.strerror or exc}.") from None
    if not stat.S_ISREG(info.st_mode):
        raise StoreError(f"{path} is not a regular file and cannot hold an audit store; give "
                         "the audit database's file name (e.g. audits.duckdb).")
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
    except OSError as exc:
        raise StoreError(f"Cannot read the audit database {path}: {exc.strerror or exc}.") from None
    if head.startswith(b"SQLite format 3\0"):
        raise _not_a_store(path, "it is a SQLite database")
    if head[8:12] != _DUCKDB_MAGIC:
        raise _not_a_store(path, "it is not a DuckDB database file")


def cache_max_bytes_from_env() -> int:
    """The activation cache's size cap: ``$ATTNXAI_CACHE_MAX_BYTES`` if set, else 2 GB."""
    text = os.environ.get(CACHE_MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_CACHE_MAX_BYTES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise StoreError(f"{CACHE_MAX_BYTES_ENV} must be a whole number of bytes (0 or more), "
                         f"not {text!r}; unset it for the default of 2 GB.")
    return value


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class Store:
    """The audit database at ``path`` (default :func:`default_db_path`).

    Every method opens its own short connection, so a ``Store`` is cheap, safe to share
    between threads and never keeps other processes out for longer than one operation.
    ``lock_timeout`` bounds how long an operation waits for another process's lock;
    ``notify`` receives the waiting message (default: a logging warning).
    ``cache_max_bytes`` caps the activation cache (default :func:`cache_max_bytes_from_env`):
    after each addition the oldest entries are evicted until it fits.
    """

    def __init__(self, path: str | Path | None = None, *,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
                 notify: Callable[[str], None] | None = None,
                 cache_max_bytes: int | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        check_store_path(self.path)
        if path is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"Cannot create the attnxai folder {self.path.parent} "
                                 f"({HOME_ENV}): {exc.strerror or exc}; point {HOME_ENV} at a "
                                 "folder you can write.") from None
        elif not self.path.parent.is_dir():
            raise StoreError(f"Cannot use {self.path}: folder {self.path.parent} does not exist.")
        self.lock_timeout = lock_timeout
        self.notify = notify or log.warning
        self.cache_max_bytes = (cache_max_bytes_from_env() if cache_max_bytes is None
                                else cache_max_bytes)
        self._schema_ok = False

    # -- connections and transactions ------------------------------------------------------------
    def _open(self) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout
        delay, warned = 0.05, False
        while True:
            try:
                with _ATTACH_LOCK:
                    return duckdb.connect(str(self.path), config=CONNECTION_CONFIG)
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise _open_error(self.path, exc) from None
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"The audit database {self.path} is in use by another process and stayed "
                        f"locked for {self.lock_timeout:.0f} s; try again when it is done, or use "
                        "another database file (--db).") from None
                if not warned:
                    self.notify(f"The audit database {self.path} is in use by another process; "
                                f"waiting up to {self.lock_timeout:.0f} s ...")
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @contextmanager
    def _connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        check_store_file(self.path)
        con = self._open()
        try:
            if not self._schema_ok:
                with _MIGRATE_LOCK:  # other processes are kept out by the file lock
                    try:
                        self._migrate(con)
                    except duckdb.Error as exc:  # a damaged file can open and fail on reading
                        raise _open_error(self.path, exc) from None
                self._schema_ok = True
            try:
                yield con
            except duckdb.IOException as exc:  # the file, not the query: damaged or unreadable
                raise _open_error(self.path, exc) from None
        finally:
            with _ATTACH_LOCK:
                con.close()

    def _write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``fn`` in one transaction; retry it a few times if a concurrent transaction of
        this process conflicts (e.g. two threads adding the same cache key: DuckDB reports a
        write-write conflict or a duplicate key at commit, and the retry then finds the row)."""
        for attempt in range(_CONFLICT_RETRIES):
            with self._connect() as con:
                con.begin()
                try:
                    out = fn(con)
                    con.commit()
                    return out
                except (duckdb.TransactionException, duckdb.ConstraintException):
                    _rollback(con)
                    if attempt == _CONFLICT_RETRIES - 1:
                        raise
                except BaseException:
                    _rollback(con)
                    raise
            time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._connect() as con:
            return con.execute(sql, list(params)).df()

    # -- schema ------------------------------------------------------------------------------------
    def schema_version(self) -> int:
        """The schema version of the file (after any migration this store applied)."""
        with self._connect() as con:
            return _file_version(con, self.path)

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        while True:
            version = _file_version(con, self.path)
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer attnxai (schema {version}; "
                                 f"this one knows up to {SCHEMA_VERSION}); upgrade attnxai.")
            if version == SCHEMA_VERSION:
                return
            con.begin()
            try:
                for statement in MIGRATIONS[version]:
                    con.execute(statement)
                con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                            [str(version + 1)])
                con.commit()
            except BaseException:
                _rollback(con)
                raise

    # -- models, datasets, concept sets ------------------------------------------------------------
    def record_model(self, model_hash: str, spec: str, modality: str, num_layers: int,
                     labels: Sequence[str], card: dict[str, Any]) -> None:
        """Remember a model by content hash (idempotent: the first record is kept)."""
        self._write(lambda con: con.execute(
            "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [model_hash, spec, modality, num_layers, json.dumps(list(labels)),
             json.dumps(card, default=str), _now()]))

    def get_model(self, model_hash: str) -> dict[str, Any] | None:
        """The recorded model ``model_hash``: ``spec``, ``modality``, ``num_layers``,
        ``labels`` and ``card`` (None when the store has no record of it)."""
        with self._connect() as con:
            row = _one(con, "SELECT spec, modality, num_layers, labels, card FROM models "
                       "WHERE model_hash = ?", [model_hash])
        if row is None:
            return None
        spec, modality, num_layers, labels, card = row
        return {"spec": spec, "modality": modality, "num_layers": num_layers,
                "labels": json.loads(labels) if labels else [],
                "card": json.loads(card) if card else {}}

    def record_dataset(self, dataset_hash: str, name: str, source: str, modality: str,
                       n_items: int, labelled: bool) -> None:
        """Remember a dataset by content hash (idempotent: the first record is kept)."""
        self._write(lambda con: con.execute(
            "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [dataset_hash, name, source, modality, n_items, labelled, _now()]))

    def record_concept_set(self, cs: ConceptSet) -> str:
        """Store a concept set's version (examples included; images as file name + content hash);
        return its version hash. Recording the same version again changes nothing."""
        version = cs.version_hash()
        manifest = cs.to_manifest()
        lists = {}
        for which in ("examples", "counterexamples"):
            if cs.modality == "image":
                lists[which] = [{"file": rel, "example_hash": example_hash(x)}
                                for rel, x in zip(manifest[which], getattr(cs, which))]
            else:
                lists[which] = list(getattr(cs, which))
        self._write(lambda con: con.execute(
            "INSERT INTO concept_sets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING",
            [cs.name, version, cs.modality, cs.kind, cs.description, cs.default_pool, cs.paired,
             len(cs.examples), len(cs.counterexamples), json.dumps(lists["examples"]),
             json.dumps(lists["counterexamples"]), _now()]))
        return version

    def concept_versions(self, name: str) -> pd.DataFrame:
        """Every recorded version of the concept set ``name``, newest first."""
        return self._read(
            "SELECT name, version_hash, modality, kind, description, default_pool, paired, "
            "n_examples, n_counterexamples, recorded FROM concept_sets WHERE name = ? "
            "ORDER BY recorded DESC", [name])

    def concept_examples(self, name: str, version_hash: str) -> dict[str, list]:
        """The stored examples and counterexamples of one concept-set version."""
        with self._connect() as con:
            row = _one(con, "SELECT examples, counterexamples FROM concept_sets "
                       "WHERE name = ? AND version_hash = ?", [name, version_hash])
        if row is None:
            raise StoreError(f"No version {version_hash[:12]} of concept set {name!r} in {self.path}.")
        return {"examples": json.loads(row[0]), "counterexamples": json.loads(row[1])}

    # -- runs ----------------------------------------------------------------------------------------
    def start_run(self, run_id: str, *, model: str, model_hash: str,
                  datasets: Sequence[RunDataset], targets: Sequence[str],
                  concepts: Sequence[RunConcept], config: AuditConfig,
                  library_versions: dict[str, str]) -> None:
        """Insert a run with status ``running``: what it uses (datasets by content hash,
        concept sets and pools by version) and its config (:meth:`AuditConfig.to_dict`)."""
        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "INSERT INTO runs (run_id, created, status, model, model_hash, datasets, targets, "
                "concepts, seed, config, library_versions, pid, host) "
                "VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, _now(), model, model_hash, json.dumps([d.dataset for d in datasets]),
                 json.dumps(list(targets)),
                 json.dumps([c.name for c in concepts if c.role == "concept"]), config.tcav.seed,
                 json.dumps(config.to_dict(), default=str), json.dumps(library_versions),
                 os.getpid(), socket.gethostname()])
            _insert_members(con, run_id, datasets, concepts)
        self._write(write)

    def describe_run(self, run_id: str, *, model: str, model_hash: str,
                     datasets: Sequence[RunDataset], targets: Sequence[str],
                     concepts: Sequence[RunConcept], config: AuditConfig) -> None:
        """Fill in what a running run uses, once it is known: a run is recorded by
        :meth:`start_run` the moment it starts, before its model and data are loaded, and
        described here after they are (the datasets and concepts replace any given before)."""
        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(
                "UPDATE runs SET model = ?, model_hash = ?, datasets = ?, targets = ?, "
                "concepts = ?, seed = ?, config = ? WHERE run_id = ? AND status = 'running'",
                [model, model_hash, json.dumps([d.dataset for d in datasets]), json.dumps(list(targets)),
                 json.dumps([c.name for c in concepts if c.role == "concept"]), config.tcav.seed,
                 json.dumps(config.to_dict(), default=str), run_id])
            con.execute("DELETE FROM run_datasets WHERE run_id = ?", [run_id])
            con.execute("DELETE FROM run_concepts WHERE run_id = ?", [run_id])
            _insert_members(con, run_id, datasets, concepts)
        self._write(write)

    def complete_run(self, run_id: str, tables: dict[str, pd.DataFrame], duration_s: float,
                     activations_cached: int = 0, activations_computed: int = 0) -> None:
        """Write a run's result tables and mark it completed, in one transaction.

        ``tables`` maps every table of :data:`attnxai.schema.TABLES` to a DataFrame holding
        (at least) its columns (an empty frame: no rows).
        """
        if set(tables) != set(TABLES):
            raise ValueError(f"a run's results are the tables {sorted(TABLES)}, not "
                             f"{sorted(tables)}")

        def write(con: duckdb.DuckDBPyConnection) -> None:
            status = _one(con, "SELECT status FROM runs WHERE run_id = ?", [run_id])
            if status is None or status[0] != "running":
                raise StoreError(f"Run {run_id} is not running (it is "
                                 f"{status[0] if status else 'gone'}); its results were not saved.")
            for name in TABLES:
                _insert_frame(con, name, run_id, tables[name])
            con.execute("UPDATE runs SET status = 'completed', finished = ?, duration_s = ?, "
                        "activations_cached = ?, activations_computed = ? WHERE run_id = ?",
                        [_now(), duration_s, activations_cached, activations_computed, run_id])
        self._write(write)

    def end_run(self, run_id: str, status: str, error: str, duration_s: float | None) -> None:
        """Mark a run failed or cancelled, with the reason; it keeps no results.
        ``duration_s`` is None when it is not known."""
        if status not in ("failed", "cancelled"):
            raise ValueError(f"end_run is for failed or cancelled runs, not {status!r}")
        self._write(lambda con: con.execute(
            "UPDATE runs SET status = ?, error = ?, finished = ?, duration_s = ? "
            "WHERE run_id = ? AND status = 'running'", [status, error, _now(), duration_s, run_id]))

    def list_runs(self) -> pd.DataFrame:
        """Every run, newest first; ``datasets``/``targets``/``concepts`` as comma-separated text
        and ``config`` as a JSON string. Runs whose process died are first marked failed."""
        self._reap_orphans()
        df = self._read(f"SELECT {', '.join(RUN_LIST_COLUMNS)} FROM runs "
                        "ORDER BY created DESC, run_id DESC")
        for col in ("datasets", "targets", "concepts"):
            df[col] = [", ".join(json.loads(v)) if v else "" for v in df[col]]
        return df

    def get_run(self, run_id: str) -> RunRecord:
        """One run, with what exactly it used (``dataset_details``, ``concept_versions``)."""
        self._reap_orphans()
        with self._connect() as con:
            found = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id]).df()
            if found.empty:
                raise StoreError(f"No run {run_id!r} in {self.path}; “attnxai runs” lists them.")
            row = {k: _plain(v) for k, v in found.iloc[0].to_dict().items()}
            details = con.execute(
                "SELECT dataset, dataset_hash, source, n_items FROM run_datasets WHERE run_id = ? "
                "ORDER BY rowid", [run_id]).fetchall()
            versions = con.execute(
                "SELECT name, version_hash, role FROM run_concepts WHERE run_id = ? ORDER BY rowid",
                [run_id]).fetchall()
        data = {k: json.loads(row[k]) if row[k] is not None else None
                for k in ("datasets", "targets", "concepts", "config", "library_versions")}
        return RunRecord(
            run_id=row["run_id"], status=row["status"], created=row["created"],
            finished=row["finished"], error=row["error"], model=row["model"],
            model_hash=row["model_hash"], datasets=data["datasets"] or [],
            targets=data["targets"] or [], concepts=data["concepts"] or [], seed=row["seed"],
            # The run's model fills in a config stored without one (the oldest runs).
            config=AuditConfig.from_dict({"model": row["model"], **(data["config"] or {})}),
            library_versions=data["library_versions"] or {}, duration_s=row["duration_s"],
            activations_cached=row["activations_cached"] or 0,
            activations_computed=row["activations_computed"] or 0, pid=row["pid"],
            host=row["host"], dataset_details=tuple(RunDataset(*r) for r in details),
            concept_versions=tuple(RunConcept(*r) for r in versions))

    def delete_run(self, run_id: str) -> None:
        """Delete a run and all its rows (unknown id: StoreError)."""
        self.get_run(run_id)

        def write(con: duckdb.DuckDBPyConnection) -> None:
            for table in (*TABLES, "run_datasets", "run_concepts", "runs"):
                con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
        self._write(write)

    def _reap_orphans(self) -> None:
        """Mark failed the runs still 'running' whose process on this host no longer exists."""
        with self._connect() as con:
            rows = con.execute("SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?",
                               [socket.gethostname()]).fetchall()
        dead = [(run_id, pid) for run_id, pid in rows if pid is not None and not _pid_alive(pid)]
        for run_id, pid in dead:
            # When the process died is not known, so neither is the run's duration.
            self.end_run(run_id, "failed", f"the process running it (pid {pid}) ended without "
                                           "finishing it", None)

    # -- results ---------------------------------------------------------------------------------
    def results(self, name: str, run_id: str) -> pd.DataFrame:
        """The rows of one run in the results table ``name`` (:data:`attnxai.schema.TABLES`),
        in its columns and in the order the run wrote them."""
        self.get_run(run_id)  # a clear error for an unknown id
        table = TABLES[name]
        order = "seq" if table.ordered else "rowid"
        return self._read(f"SELECT {', '.join(table.names())} FROM {name} WHERE run_id = ? "
                          f"ORDER BY {order}", [run_id])

    def summary(self, run_id: str) -> pd.DataFrame:
        """The run's tidy summary: one row per dataset x target x concept x layer x weighting
        (no rows unless the run completed)."""
        return self.results("summary", run_id)

    def cav_scores(self, run_id: str) -> pd.DataFrame:
        """TCAV and magnitude score of every CAV (concept and random) per layer and weighting."""
        return self.results("cav_scores", run_id)

    def cav_accuracy(self, run_id: str) -> pd.DataFrame:
        """Held-out and training accuracy of every CAV per layer."""
        return self.results("cav_accuracy", run_id)

    def input_scores(self, run_id: str) -> pd.DataFrame:
        """S(x) per concept CAV, layer, weighting and input (``input_index`` -> :meth:`inputs`);
        empty unless the run kept them (``per_cav_scores``) or predates ``input_summary``."""
        return self.results("input_scores", run_id)

    def inputs(self, run_id: str) -> pd.DataFrame:
        """The audited inputs: ``input_index`` (as in the scores) per dataset and target, the
        dataset position ``item_index``, ``input`` (the text, or the image path; for in-memory
        images ``<source>#<item_index>``), gold ``label``, ``prediction`` and its probability."""
        return self.results("inputs", run_id)

    def cav_vectors(self, run_id: str, cav_name: str) -> dict[int, torch.Tensor]:
        """The stored CAVs of ``cav_name`` (a concept, or ``random:<pool>``) in a run: layer ->
        ``[reps, d]`` unit vectors in rep order. Empty when the run stored none: it did not
        complete, or it was saved before the store kept CAVs (schema < 3)."""
        self.get_run(run_id)
        with self._connect() as con:
            rows = con.execute("SELECT layer, dim, vector FROM cavs WHERE run_id = ? AND "
                               "cav_name = ? ORDER BY layer, rep", [run_id, cav_name]).fetchall()
        by_layer: dict[int, list[bytes]] = {}
        for layer, _, vector in rows:
            by_layer.setdefault(int(layer), []).append(vector)
        dims = {int(layer): int(dim) for layer, dim, _ in rows}
        return {layer: torch.from_numpy(np.frombuffer(b"".join(vs), dtype="<f4").copy()
                                        .reshape(len(vs), dims[layer]))
                for layer, vs in by_layer.items()}

    def input_detail(self, run_id: str) -> pd.DataFrame:
        """Per input, concept, layer and weighting: the mean and std of S(x) over the concept's
        CAVs and the share of CAVs with S(x) > 0, joined with the input itself. Read from
        ``input_summary``; runs saved before it (schema < 5) have it computed from their
        per-CAV ``input_scores``."""
        self.get_run(run_id)
        with self._connect() as con:
            summarised = _one(con, "SELECT count(*) FROM input_summary WHERE run_id = ?", [run_id])
        if summarised[0]:
            return self._read(
                "SELECT s.dataset, s.target, s.concept, s.layer, s.weighting, s.input_index, "
                "i.item_index, i.input, i.label, i.prediction, i.probability, s.score_mean, "
                "s.score_std, s.positive_fraction, s.num_cavs "
                "FROM input_summary s LEFT JOIN inputs i ON i.run_id = s.run_id "
                "AND i.dataset = s.dataset AND i.target = s.target "
                "AND i.input_index = s.input_index WHERE s.run_id = ? ORDER BY s.seq",
                [run_id])[list(INPUT_DETAIL)]
        return self._read(
            "SELECT s.dataset, s.target, s.concept, s.layer, s.weighting, s.input_index, "
            "i.item_index, i.input, i.label, i.prediction, i.probability, "
            "avg(s.score) AS score_mean, stddev_samp(s.score) AS score_std, "
            "avg(CASE WHEN s.score > 0 THEN 1.0 ELSE 0.0 END) AS positive_fraction, "
            "count(*) AS num_cavs, min(s.seq) AS first "
            "FROM input_scores s LEFT JOIN inputs i ON i.run_id = s.run_id "
            "AND i.dataset = s.dataset AND i.target = s.target AND i.input_index = s.input_index "
            "WHERE s.run_id = ? GROUP BY ALL ORDER BY first", [run_id])[list(INPUT_DETAIL)]

    # -- activation cache ------------------------------------------------------------------------
    def cached_activations(self, model_hash: str, example_hashes: Sequence[str],
                           layers: Sequence[int]) -> dict[tuple[str, int], torch.Tensor]:
        """Cached token activations ``[(example hash, layer)] -> [tokens, d]`` that exist."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT example_hash, layer, dtype, n_tokens, dim, data FROM activation_cache "
                "WHERE model_hash = ? AND example_hash IN (SELECT unnest(?)) "
                "AND list_contains(?, layer)",
                [model_hash, list(set(example_hashes)), list(layers)]).fetchall()
        return {(h, layer): _tensor(data, dtype, n, d) for h, layer, dtype, n, d, data in rows}

    def cached_keys(self, model_hash: str, example_hashes: Sequence[str],
                    layers: Sequence[int]) -> set[tuple[str, int]]:
        """The ``(example hash, layer)`` entries of the cache that exist (without their data)."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT example_hash, layer FROM activation_cache WHERE model_hash = ? "
                "AND example_hash IN (SELECT unnest(?)) AND list_contains(?, layer)",
                [model_hash, list(set(example_hashes)), list(layers)]).fetchall()
        return {(h, int(layer)) for h, layer in rows}

    def cache_activations(self, model_hash: str,
                          entries: dict[tuple[str, int], torch.Tensor]) -> None:
        """Add token activations to the cache (entries already there are kept as they are),
        then evict the oldest entries while the cache is over :attr:`cache_max_bytes`."""
        rows = []
        for (h, layer), t in entries.items():
            t = t.detach().cpu().contiguous()
            rows.append((model_hash, h, layer, str(t.dtype).removeprefix("torch."), t.shape[0],
                         t.shape[1], t.view(torch.uint8).numpy().tobytes()))
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=["model_hash", "example_hash", "layer", "dtype",
                                            "n_tokens", "dim", "data"]).assign(created=_now())

        def write(con: duckdb.DuckDBPyConnection) -> None:
            # A registered frame inserts in one statement; executemany is ~100x slower here.
            con.register("_cache", frame)
            try:
                con.execute("INSERT INTO activation_cache SELECT * FROM _cache ON CONFLICT DO NOTHING")
            finally:
                con.unregister("_cache")
            _evict_oldest(con, self.cache_max_bytes)
        self._write(write)

    def cache_info(self) -> pd.DataFrame:
        """Entries (example x layer), examples and bytes of the activation cache per model hash,
        with the model's spec when the store knows it, and the oldest and newest entry."""
        return self._read(
            f"SELECT c.model_hash, any_value(m.spec) AS spec, count(*) AS entries, "
            f"count(DISTINCT c.example_hash) AS examples, sum({_ENTRY_BYTES}) AS bytes, "
            f"min(c.created) AS oldest, max(c.created) AS newest "
            f"FROM activation_cache c LEFT JOIN models m ON m.model_hash = c.model_hash "
            f"GROUP BY c.model_hash ORDER BY c.model_hash")

    def clear_cache(self, model_hash: str | None = None) -> int:
        """Drop cached activations (of one model, or all); the number of entries dropped."""
        def write(con: duckdb.DuckDBPyConnection) -> int:
            if model_hash is None:
                row = _one(con, "DELETE FROM activation_cache")
            else:
                row = _one(con, "DELETE FROM activation_cache WHERE model_hash = ?", [model_hash])
            return int(row[0]) if row else 0
        return self._write(write)


# Bytes of one cache entry, from its shape and dtype: reading the BLOBs to measure them would
# cost a scan of the whole cache after every insert. Other dtypes fall back to the BLOB.
_ENTRY_BYTES = ("(c.n_tokens::BIGINT * c.dim * CASE c.dtype WHEN 'float32' THEN 4 "
                "WHEN 'float16' THEN 2 WHEN 'bfloat16' THEN 2 WHEN 'float64' THEN 8 "
                "ELSE octet_length(c.data) END)")


def _evict_oldest(con: duckdb.DuckDBPyConnection, max_bytes: int) -> None:
    """Delete the oldest cache entries (by ``created``; ties by key) until the rest fit in
    ``max_bytes``: an entry is kept when it and every newer one fit."""
    total = _one(con, f"SELECT coalesce(sum({_ENTRY_BYTES}), 0) FROM activation_cache c")[0]
    if total <= max_bytes:
        return
    con.execute(
        f"DELETE FROM activation_cache WHERE (model_hash, example_hash, layer) IN ("
        f"SELECT model_hash, example_hash, layer FROM (SELECT c.model_hash, c.example_hash, "
        f"c.layer, sum({_ENTRY_BYTES}) OVER (ORDER BY c.created DESC, c.model_hash DESC, "
        f"c.example_hash DESC, c.layer DESC ROWS UNBOUNDED PRECEDING) AS newer_bytes "
        f"FROM activation_cache c) WHERE newer_bytes > ?)", [max_bytes])


def _file_version(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    if "meta" not in tables:
        if tables:
            raise StoreError(f"{path} is a DuckDB database but not an attnxai audit store "
                             f"(it has tables {', '.join(sorted(tables))}); use another file.")
        return 0
    row = _one(con, "SELECT value FROM meta WHERE key = 'schema_version'")
    return int(row[0]) if row else 0


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back if a transaction is still open (a failed commit has already ended it)."""
    try:
        con.rollback()
    except duckdb.TransactionException:
        pass


def _plain(value: Any) -> Any:
    """A DataFrame cell as a plain Python value (None for missing, int/float for numpy)."""
    if value is None or (not isinstance(value, (str, bytes)) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") and not isinstance(value, pd.Timestamp) else value


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> tuple | None:
    """The first row of a query, or None (reads the whole result: DuckDB wants it consumed)."""
    rows = con.execute(sql, list(params)).fetchall()
    return rows[0] if rows else None


def _insert_frame(con: duckdb.DuckDBPyConnection, name: str, run_id: str,
                  df: pd.DataFrame) -> None:
    """Insert ``df`` as rows of the results table ``name`` (its columns, in its dtypes)."""
    table = TABLES[name]
    frame = table.frame(df).reset_index(drop=True)
    if table.ordered:
        frame.insert(0, "seq", range(len(frame)))
    frame.insert(0, "run_id", run_id)
    con.register("_frame", frame)
    try:
        names = ", ".join(frame.columns)
        con.execute(f"INSERT INTO {name} ({names}) SELECT {names} FROM _frame")
    finally:
        con.unregister("_frame")


def _tensor(data: bytes, dtype: str, n: int, d: int) -> torch.Tensor:
    raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return raw.view(getattr(torch, dtype)).reshape(n, d)

"""The results schema: every table an audit stores, declared once.

Each :class:`Table` lists its columns in order, each with its DuckDB type (and so its pandas
dtype). From these declarations come

- the DuckDB DDL: the audit store's migration to a table's ``since`` version creates it
  (:func:`migration`), and a column declared with a later ``since`` is added by that version's
  migration;
- the DataFrames the library builds: :meth:`Table.frame` puts rows in the table's column order
  and dtypes;
- the columns the store writes and reads back, and the columns of the CSV exports.

Every results table is keyed by ``run_id`` (not declared: the store adds it); an ``ordered``
table also has a ``seq`` column that keeps its rows in the order the run wrote them.

To add a table: declare it in :data:`TABLES` with ``since`` = the next schema version N; in
``attnxai.audit.store`` set ``SCHEMA_VERSION = N`` and append the step ``[*migration(N)]`` to
``MIGRATIONS``; have the audit pass its rows to ``Store.complete_run`` (which writes every table
declared here; an empty frame for a run without rows) and read them with ``Store.results``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

#: pandas dtype of each DuckDB type a results column may have.
DTYPES = {"VARCHAR": "object", "INTEGER": "int64", "BIGINT": "int64", "DOUBLE": "float64",
          "BOOLEAN": "bool", "BLOB": "object"}

#: The effects' dataset of a concept's matched pairs (their rows measure the pairs, not a dataset).
PAIRS = "pairs"


@dataclass(frozen=True)
class Column:
    """One column: its name, DuckDB type and the schema version that added it (0: with its
    table)."""

    name: str
    sql: str
    since: int = 0

    @property
    def dtype(self) -> str:
        """The column's pandas dtype."""
        return DTYPES[self.sql]


def columns(spec: str) -> tuple[Column, ...]:
    """Columns from ``"name TYPE, name TYPE, ..."`` (all present since their table's version)."""
    out = []
    for part in spec.split(","):
        name, sql = part.split()
        if sql not in DTYPES:
            raise ValueError(f"column {name}: unknown type {sql}")
        out.append(Column(name, sql))
    return tuple(out)


@dataclass(frozen=True)
class Table:
    """A results table: name, the schema version that creates it, its columns in order."""

    name: str
    since: int
    columns: tuple[Column, ...]
    ordered: bool = True  # rows carry `seq`, their position in the run's output

    def names(self, exclude: Collection[str] = ()) -> list[str]:
        """Column names in order (without ``run_id`` and ``seq``), less ``exclude``."""
        return [c.name for c in self.columns if c.name not in exclude]

    def ddl(self, version: int) -> str:
        """``CREATE TABLE`` of the table as it is at schema ``version``."""
        head = ["run_id VARCHAR", *(["seq BIGINT"] if self.ordered else [])]
        body = [f"{c.name} {c.sql}" for c in self.columns if c.since <= version]
        return f"CREATE TABLE {self.name} ({', '.join(head + body)})"

    def frame(self, rows: pd.DataFrame | Iterable[Mapping[str, Any]],
              exclude: Collection[str] = ()) -> pd.DataFrame:
        """``rows`` (a DataFrame, or row dicts) as this table: its columns (less ``exclude``)
        in order, each in its dtype. Extra columns are dropped; a missing one is an error."""
        names = self.names(exclude)
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows), columns=names)
        missing = [n for n in names if n not in df.columns]
        if missing:
            raise ValueError(f"{self.name} rows lack columns {missing}")
        dtypes = {c.name: c.dtype for c in self.columns if c.name in names}
        return df[names].astype(dtypes)


TABLES: dict[str, Table] = {t.name: t for t in (
    # One row per dataset x target x concept x layer x weighting.
    Table("summary", 1, columns(
        "dataset VARCHAR, target VARCHAR, concept VARCHAR, layer INTEGER, weighting VARCHAR, "
        "mean DOUBLE, std DOUBLE, magnitude_mean DOUBLE, magnitude_std DOUBLE, "
        "random_mean DOUBLE, random_std DOUBLE, random_magnitude_mean DOUBLE, "
        "derivative_mean DOUBLE, null_derivative_std DOUBLE, p_value DOUBLE, "
        "p_adjusted DOUBLE, significant BOOLEAN, direction VARCHAR, cav_accuracy DOUBLE, "
        "cav_accuracy_std DOUBLE, reliable BOOLEAN, n_inputs INTEGER, num_cavs INTEGER, "
        "num_random INTEGER, num_null INTEGER, negatives VARCHAR, random_pool VARCHAR, "
        "test VARCHAR, statistic VARCHAR, correction VARCHAR")
        # Which CAVs formed the null: "random:<pool>" or "signflip:<concept>" (matched pairs).
        + (Column("null_cavs", "VARCHAR", since=4),)
        # False where no gradient reaches the players (every derivative exactly 0).
        + (Column("testable", "BOOLEAN", since=6),)),
    # One row per dataset x target x CAV (concept and random) x layer x weighting.
    Table("cav_scores", 1, columns(
        "dataset VARCHAR, target VARCHAR, cav_name VARCHAR, rep INTEGER, kind VARCHAR, "
        "layer INTEGER, weighting VARCHAR, tcav DOUBLE, magnitude DOUBLE, derivative DOUBLE")),
    # One row per dataset x target x CAV x layer.
    Table("cav_accuracy", 1, columns(
        "dataset VARCHAR, target VARCHAR, cav_name VARCHAR, rep INTEGER, kind VARCHAR, "
        "layer INTEGER, accuracy DOUBLE, train_accuracy DOUBLE")),
    # S(x) per dataset x target x concept CAV x layer x weighting x input (on request).
    Table("input_scores", 1, columns(
        "dataset VARCHAR, target VARCHAR, concept VARCHAR, rep INTEGER, layer INTEGER, "
        "weighting VARCHAR, input_index INTEGER, score DOUBLE")),
    # Per dataset x target x concept x layer x weighting x input: the mean and std of S(x)
    # over the concept's CAVs and the share of them with S(x) > 0 (input_scores keeps each
    # CAV's S(x) only on request; runs before version 5 kept only those).
    Table("input_summary", 5, columns(
        "dataset VARCHAR, target VARCHAR, concept VARCHAR, layer INTEGER, weighting VARCHAR, "
        "input_index INTEGER, score_mean DOUBLE, score_std DOUBLE, positive_fraction DOUBLE, "
        "num_cavs INTEGER")),
    # The input behind each input_index, per dataset x target (kept in insertion order).
    Table("inputs", 2, columns(
        "dataset VARCHAR, target VARCHAR, input_index INTEGER, item_index INTEGER, "
        "input VARCHAR, label VARCHAR, prediction VARCHAR, probability DOUBLE, "
        "selected_by VARCHAR"), ordered=False),
    # Every CAV of the run (concept and random) per layer, once per run: the CAVs do not
    # depend on the dataset or target. `vector`: `dim` float32 values, little-endian.
    Table("cavs", 3, columns(
        "cav_name VARCHAR, rep INTEGER, kind VARCHAR, layer INTEGER, dim INTEGER, "
        "vector BLOB")),
    # Causal effects per dataset x target x concept x layer x measure (attnxai.effects.table);
    # output effects of matched pairs have layer -1 and dataset PAIRS.
    Table("effects", 4, columns(
        "dataset VARCHAR, target VARCHAR, concept VARCHAR, layer INTEGER, measure VARCHAR, "
        "mean DOUBLE, ci_low DOUBLE, ci_high DOUBLE, p_value DOUBLE, p_adjusted DOUBLE, "
        "significant BOOLEAN, n_pairs INTEGER, n_skipped INTEGER, share DOUBLE, test VARCHAR")
        # The minimum relevant effect each row was tested against (its measure's units), the
        # adjusted p of the equivalence test, the verdict (relies / negligible / inconclusive;
        # `significant` is "relies") and, when inconclusive, about how many pairs would settle it.
        + (Column("min_effect", "DOUBLE", since=6), Column("p_negligible", "DOUBLE", since=6),
           Column("verdict", "VARCHAR", since=6), Column("n_needed", "DOUBLE", since=6))),
    # Per pair of a paired concept and target: its output effect (for the drill-down).
    Table("pair_effects", 4, columns(
        "target VARCHAR, concept VARCHAR, pair INTEGER, example VARCHAR, counterexample VARCHAR, "
        "delta_logit DOUBLE, delta_prob DOUBLE")),
)}

#: Run-level columns the summary CSV adds to every summary row (``run_id`` first, the rest after
#: the summary's own columns), so one CSV describes its run.
#: Columns the summary CSV adds after the stored ones: each concept's causal verdict for the row's
#: dataset and target, and whether the row's layer "relies" (what a chart's ★ marks:
#: attnxai.audit.verdicts.with_relevance).
RELEVANCE = ("relevance", "relies")
RUN_CONTEXT = ("run_id", "created", "model", "model_hash", "dataset_hash", "concept_version",
               "seed", "alpha", "min_accuracy", "layers", "attnxai_version")
#: Columns of the per-input detail (``Store.input_detail``; the detail CSV adds ``run_id`` first).
INPUT_DETAIL = ("dataset", "target", "concept", "layer", "weighting", "input_index",
                "item_index", "input", "label", "prediction", "probability", "score_mean",
                "score_std", "positive_fraction", "num_cavs")


def migration(version: int) -> list[str]:
    """The DDL that brings the results tables from schema ``version - 1`` to ``version``: the
    tables it introduces, and the columns it adds to older tables."""
    out = []
    for t in TABLES.values():
        if t.since == version:
            out.append(t.ddl(version))
        elif t.since < version:
            out += [f"ALTER TABLE {t.name} ADD COLUMN {c.name} {c.sql}"
                    for c in t.columns if c.since == version]
    return out

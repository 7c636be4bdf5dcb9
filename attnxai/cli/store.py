"""`attnxai runs`, `attnxai export`, `attnxai report` (stored audit runs), `attnxai concepts ...`
(concept sets) and `attnxai cache ...` (the activation cache)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnxai.io.concepts import (concept_roots, default_concept_root, export_concept_set,
                                 import_concept_set, list_concept_sets, load_concept_set,
                                 shipped_concept_root)
from attnxai.audit.report import detail_path, export_run
from attnxai.audit.store import (CACHE_MAX_BYTES_ENV, Store, StoreError, check_store_path,
                                 default_db_path)
from attnxai.io.datasets import format_bytes

RUNS_COLUMNS = ["run_id", "status", "created", "model", "datasets", "targets", "concepts",
                "duration_s"]


def _store(args: argparse.Namespace, must_exist: bool = True) -> Store | None:
    """The --db store; None (or an error, with ``must_exist``) when its file does not exist,
    so reading commands never create an empty database."""
    path = Path(args.db).expanduser() if args.db else default_db_path()
    check_store_path(path)  # a folder, a device or a foreign file is an error, not "no runs"
    if not path.exists():
        if must_exist:
            raise StoreError(f"No audit database at {path}; run “attnxai audit ... --db” first.")
        return None
    return Store(path, notify=lambda m: print(m, file=sys.stderr))


def cmd_runs(args: argparse.Namespace) -> int:
    """List stored runs, newest first."""
    store = _store(args, must_exist=False)
    runs = store.list_runs()[[*RUNS_COLUMNS, "error"]] if store else None
    if args.json:
        records = [] if runs is None else json.loads(runs.to_json(orient="records",
                                                                   date_format="iso"))
        print(json.dumps(records, indent=2))
        return 0
    if runs is None or runs.empty:
        print("no audit runs yet", file=sys.stderr)
        return 0
    table = runs[RUNS_COLUMNS].copy()
    table["created"] = table["created"].dt.strftime("%Y-%m-%d %H:%M:%S")
    table["duration_s"] = table["duration_s"].map(lambda v: "" if v != v else f"{v:.1f}")
    print(table.to_string(index=False))
    for r in runs.itertuples():
        if r.error:
            print(f"{r.run_id}: {r.status}: {r.error}", file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a stored run's summary CSV (and per-input CSV with --detail)."""
    out = export_run(_store(args), args.run_id, args.out, detail=args.detail)
    print(f"wrote {out}" + (f" and {detail_path(out)}" if args.detail else ""), file=sys.stderr)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write a stored run's self-contained HTML report."""
    # Imported here: Altair and vl-convert are needed by this command only.
    from attnxai.audit.report_html import write_report

    out = write_report(_store(args), args.run_id, args.html)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_concepts_list(args: argparse.Namespace) -> int:
    """Concept sets: name, source (yours / shipped), modality, kind, number of examples.
    Without --concept-dir: the user's folder, then the sets shipped with attnxai."""
    infos = list_concept_sets(args.concept_dir, modality=args.modality)
    rows = [{"name": i.name, "source": i.source, "modality": i.modality, "kind": i.kind,
             "n_examples": i.n_examples, "default_pool": i.default_pool, "error": i.error,
             "path": str(i.path)} for i in infos]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        where = args.concept_dir or " or ".join(str(r) for r in concept_roots())
        print(f"no concept sets in {where}", file=sys.stderr)
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        tail = f"  BROKEN: {r['error']}" if r["error"] else (
            f"  pool: {r['default_pool']}" if r["default_pool"] else "")
        print(f"{r['name']:<{width}}  {r['source']:<7}  {r['modality'] or '?':<5}  "
              f"{r['kind'] or '?':<11} {r['n_examples']:>5} examples{tail}")
    if args.concept_dir is None:
        print(f"yours: {default_concept_root()} · shipped (read-only): {shipped_concept_root()}",
              file=sys.stderr)
    return 0


def cmd_concepts_show(args: argparse.Namespace) -> int:
    """One concept set: its manifest fields, version hash and first examples."""
    cs = load_concept_set(args.name, args.concept_dir)
    info = {"name": cs.name, "modality": cs.modality, "kind": cs.kind,
            "description": cs.description, "default_pool": cs.default_pool, "paired": cs.paired,
            "n_examples": len(cs.examples), "n_counterexamples": len(cs.counterexamples),
            "version_hash": cs.version_hash(), "folder": str(cs.folder),
            "examples": [str(x) for x in cs.examples[: args.n]],
            "counterexamples": [str(x) for x in cs.counterexamples[: args.n]]}
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    for key in ("name", "modality", "kind", "description", "default_pool", "paired",
                "n_examples", "n_counterexamples", "version_hash", "folder"):
        print(f"{key:>17}: {info[key]}")
    for which in ("examples", "counterexamples"):
        for x in info[which]:
            print(f"{which[:-1]:>17}: {x}")
    return 0


def cmd_concepts_import(args: argparse.Namespace) -> int:
    """Import a concept set (zip or folder) and record its version in the audit database."""
    store = Store(args.db or None, notify=lambda m: print(m, file=sys.stderr))
    store.schema_version()  # an unusable database fails before anything is imported
    cs = import_concept_set(args.source, args.concept_dir, overwrite=args.overwrite)
    version = store.record_concept_set(cs)
    print(f"imported {cs.name} ({cs.modality} {cs.kind}, {len(cs.examples)} examples, "
          f"version {version[:12]}) into {cs.folder.parent}", file=sys.stderr)
    return 0


def cmd_concepts_export(args: argparse.Namespace) -> int:
    """Export a concept set to a zip."""
    out = export_concept_set(args.name, args.out, args.concept_dir)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cache_model(store: Store, prefix: str | None) -> str | None:
    """The full model hash that ``--model`` (a hash or its start) names in the cache."""
    if prefix is None:
        return None
    hashes = [h for h in store.cache_info()["model_hash"] if h.startswith(prefix.strip())]
    if len(hashes) != 1:
        what = "no cached model" if not hashes else f"{len(hashes)} cached models"
        raise StoreError(f"--model {prefix!r} matches {what} in {store.path}; "
                         "“attnxai cache info” lists their hashes.")
    return hashes[0]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def cmd_cache_info(args: argparse.Namespace) -> int:
    """Entries, examples and bytes of the activation cache per model."""
    store = _store(args, must_exist=False)
    info = store.cache_info() if store else None
    if info is not None and args.model is not None:
        info = info[info["model_hash"] == _cache_model(store, args.model)]
    if info is None or info.empty:
        print("the activation cache is empty", file=sys.stderr)
        return 0
    for r in info.itertuples():
        spec = r.spec if isinstance(r.spec, str) else "(model not recorded)"
        print(f"{r.model_hash}  {spec}: {_count(r.entries, 'entry', 'entries')}, "
              f"{_count(r.examples, 'example', 'examples')}, {format_bytes(int(r.bytes))}")
    print(f"total {format_bytes(int(info['bytes'].sum()))} "
          f"(cap {format_bytes(store.cache_max_bytes)}, ${CACHE_MAX_BYTES_ENV})")
    return 0


def cmd_cache_clear(args: argparse.Namespace) -> int:
    """Drop the cached activations of one model (--model) or all."""
    store = _store(args, must_exist=False)
    if store is None:
        print("the activation cache is empty", file=sys.stderr)
        return 0
    removed = store.clear_cache(_cache_model(store, args.model))
    print(f"removed {_count(removed, 'cached entry', 'cached entries')}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add the `runs`, `export`, `report`, `concepts` and `cache` subcommands."""
    def db_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=None, metavar="PATH",
                       help="audit database (default: $ATTNXAI_HOME/audits.duckdb, "
                            "~/.attnxai/audits.duckdb)")

    def dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--concept-dir", type=Path, default=None,
                       help="folder of concept sets (default: yours, $ATTNXAI_CONCEPTS or "
                            "$ATTNXAI_HOME/concept_sets, then the shipped, read-only ones)")

    p = sub.add_parser("runs", help="list stored audit runs, newest first")
    db_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("export", help="write a stored audit run as CSV")
    p.add_argument("run_id")
    p.add_argument("--out", required=True, help="summary CSV file to write")
    p.add_argument("--detail", action="store_true",
                   help="also write the per-input CSV <name>.detail.csv")
    db_arg(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write a stored audit run as one self-contained HTML file")
    p.add_argument("run_id")
    p.add_argument("--html", required=True, metavar="OUT.html", help="HTML file to write")
    db_arg(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("concepts", help="list, show, import and export concept sets")
    csub = p.add_subparsers(dest="concepts_command", required=True)
    c = csub.add_parser("list", help="name, source, modality, kind and size of every concept set")
    dir_arg(c)
    c.add_argument("--modality", choices=["text", "image"], default=None)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_concepts_list)
    c = csub.add_parser("show", help="one concept set's details and first examples")
    c.add_argument("name")
    dir_arg(c)
    c.add_argument("-n", type=int, default=5, help="how many examples to show")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_concepts_show)
    c = csub.add_parser("import", help="import a concept set from a zip or folder")
    c.add_argument("source", type=Path, help="ZIP file or folder")
    c.add_argument("--overwrite", action="store_true", help="replace a set of the same name")
    dir_arg(c)
    db_arg(c)
    c.set_defaults(func=cmd_concepts_import)
    c = csub.add_parser("export", help="export a concept set to a zip")
    c.add_argument("name")
    c.add_argument("--out", required=True, help="ZIP file to write")
    dir_arg(c)
    c.set_defaults(func=cmd_concepts_export)

    p = sub.add_parser("cache", help="show or clear the activation cache of the audit database")
    csub = p.add_subparsers(dest="cache_command", required=True)
    for name, func, text in (("info", cmd_cache_info, "entries, examples and bytes per model"),
                             ("clear", cmd_cache_clear, "drop cached activations")):
        c = csub.add_parser(name, help=text)
        db_arg(c)
        c.add_argument("--model", default=None, metavar="HASH",
                       help="only this model (its hash as `cache info` shows it, or its start)")
        c.set_defaults(func=func)

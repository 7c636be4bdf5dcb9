"""`attnxai audit`: TCAV of concepts for target classes, kept in the audit store."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from attnxai.audit.report import detail_path, export_run, summary_frame
from attnxai.audit.runner import DEMO, AuditConfig, run_audit
from attnxai.audit.store import Store
from attnxai.cli.common import add_model_arguments
from attnxai.errors import UserInputError


def parse_layers(text: str) -> list[int] | None:
    """`all` -> None (every layer), or a comma list like `0,3,5` -> layer indices (checked
    against the model when the audit is validated)."""
    if text.strip().lower() == "all":
        return None
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserInputError(f"--layers must be 'all' or numbers like 0,3,5, not {text!r}.") from None
    if not layers:
        raise UserInputError(f"--layers must be 'all' or numbers like 0,3,5, not {text!r}.")
    return layers


class _Bar:
    """A tqdm bar driven by run_tcav's (fraction, message) callback."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=desc, file=sys.stderr, leave=False,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(round(100 * fraction))
        self.bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self.bar.close()


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The AuditConfig of an `attnxai audit` command line."""
    names = [n.strip() for n in args.concepts.split(",") if n.strip()]
    if not names:
        raise UserInputError("--concepts needs at least one concept set name.")
    return AuditConfig(model=args.model, datasets=args.data or [DEMO], targets=args.target,
                       concepts=names, layers=parse_layers(args.layers), num_cavs=args.num_cavs,
                       num_random=args.num_random, num_null=args.num_null,
                       weighting=args.weighting, test=args.test, correction=args.correction,
                       alpha=args.alpha, negatives=args.negatives, seed=args.seed,
                       batch_size=args.batch_size, limit=args.limit,
                       concept_dir=str(args.concept_dir) if args.concept_dir else None,
                       device=args.device, trust_remote_code=args.trust_remote_code)


def format_summary(summary: pd.DataFrame) -> str:
    """A readable per-layer table: TCAV mean ± std, magnitude, p-values and significance."""
    lines = []
    keys = ["dataset", "target", "concept", "weighting"]
    for (dataset, target, concept, weighting), g in summary.groupby(keys, sort=False):
        lines.append(f"\n[{dataset}] {concept} -> {target}  ({weighting} weighting, "
                     f"{g['test'].iloc[0]} test on {g['statistic'].iloc[0]}, "
                     f"{g['correction'].iloc[0]} correction, {int(g['n_inputs'].iloc[0])} inputs)")
        lines.append(f"  {'layer':>5} {'TCAV':>13} {'magnitude':>9} {'p':>7} {'p adj':>7} "
                     f"{'CAV acc':>7}  verdict")
        for r in g.itertuples():
            verdict = ("significant, " + r.direction) if r.significant else (
                "unreliable CAVs" if not r.reliable else "-")
            lines.append(f"  {r.layer:>5} {r.mean:>6.3f} ± {r.std:<5.3f} {r.magnitude_mean:>9.3f} "
                         f"{r.p_value:>7.4f} {r.p_adjusted:>7.4f} {r.cav_accuracy:>7.3f}  {verdict}")
    return "\n".join(lines)


def _check_out(path: str | None) -> None:
    if path and not Path(path).parent.is_dir():
        raise UserInputError(f"Cannot write {path}: folder {Path(path).parent} does not exist.")


def cmd_audit(args: argparse.Namespace) -> int:
    """Run an audit; keep it in the --db store (if given) and write --csv (if given)."""
    _check_out(args.csv)
    config = audit_config(args)
    with contextlib.ExitStack() as stack:
        if args.db is None:  # not persisted: a throw-away store holds the run until exported
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="attnxai-audit-"))
            store = Store(Path(tmp) / "audit.duckdb")
        else:
            store = Store(args.db or None, notify=lambda m: print(m, file=sys.stderr))
            store.schema_version()  # an unusable file fails now, before the model loads
        bar = _Bar("audit")
        try:
            run_id = run_audit(config, store, progress=bar)
        finally:
            bar.close()
        run = store.get_run(run_id)
        print(format_summary(summary_frame(store, run_id)))
        if args.csv:
            export_run(store, run_id, args.csv, detail=args.detail)
            print(f"\nwrote {args.csv}" + (f" and {detail_path(args.csv)}" if args.detail else ""),
                  file=sys.stderr)
        if args.db is not None:
            print(f"run {run_id} saved to {store.path} ({run['duration_s']:.1f} s; "
                  f"{run['activations_cached']} examples' activations from the cache, "
                  f"{run['activations_computed']} computed)", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add the `audit` subcommand."""
    p = sub.add_parser("audit", help="TCAV audit: do target classes rely on concepts, per layer?")
    add_model_arguments(p)
    p.add_argument("--data", action="append",
                   help="dataset (CSV/TXT/JSONL, image folder or zip, or 'demo'); repeat to audit "
                        "several datasets in one run; default: the model's demo data")
    p.add_argument("--target", action="append", required=True, help="class to audit (repeatable)")
    p.add_argument("--concepts", required=True, help="comma-separated concept set names")
    p.add_argument("--concept-dir", type=Path, default=None, help="folder of concept sets")
    p.add_argument("--layers", default="all", help="all, or a comma list like 0,3,5")
    p.add_argument("--num-cavs", type=int, default=20)
    p.add_argument("--num-random", type=int, default=10)
    p.add_argument("--num-null", type=int, default=200,
                   help="random-vs-random CAVs per pool and layer forming the null")
    p.add_argument("--weighting", default="both", choices=["attention", "plain", "both"])
    p.add_argument("--test", default="grouped", choices=["grouped", "empirical", "welch", "one_sample"],
                   help="grouped (default): random-effects test against the null CAVs; see README")
    p.add_argument("--correction", default="bh", choices=["bh", "bonferroni", "none"])
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--negatives", default="auto", choices=["auto", "random", "relative", "matched"])
    p.add_argument("--limit", type=int, default=0, help="at most this many inputs per target")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", help="write the summary CSV here")
    p.add_argument("--detail", action="store_true",
                   help="with --csv, also write the per-input CSV <name>.detail.csv")
    p.add_argument("--db", nargs="?", const="", default=None, metavar="PATH",
                   help="keep the run in this audit database (--db alone: "
                        "$ATTNXAI_HOME/audits.duckdb, default ~/.attnxai/audits.duckdb)")
    p.set_defaults(func=cmd_audit)

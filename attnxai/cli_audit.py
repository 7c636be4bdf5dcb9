"""`attnxai audit` (TCAV of concepts for target classes) and `attnxai bench tcav`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from attnxai.errors import UserInputError

SUMMARY_COLUMNS = ["target", "concept", "layer", "weighting", "mean", "std", "magnitude_mean",
                   "p_value", "p_adjusted", "significant", "direction", "cav_accuracy", "reliable",
                   "n_inputs"]


def parse_layers(text: str, num_layers: int) -> list[int]:
    """`all` or a comma list like `0,3,5` -> layer indices, checked against the model."""
    if text.strip().lower() == "all":
        return list(range(num_layers))
    try:
        layers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserInputError(f"--layers must be 'all' or numbers like 0,3,5, not {text!r}.") from None
    bad = [l for l in layers if not 0 <= l < num_layers]
    if bad or not layers:
        raise UserInputError(f"Unknown layer(s) {bad or text!r}: this model has layers 0..{num_layers - 1}.")
    return layers


class _Bar:
    """A tqdm bar driven by run_tcav's (fraction, message) callback."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=desc, file=sys.stderr, leave=False,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(round(100 * fraction))
        self.bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self.bar.close()


def run_audit_cli(args: argparse.Namespace) -> pd.DataFrame:
    """Validate everything, then run TCAV for every target; return the corrected summary."""
    from attnxai.cli import _load
    from attnxai.data import demo_dataset, load_dataset
    from attnxai.concepts import load_audit_concepts
    from attnxai.tcav_run import TCAVConfig, apply_correction, run_tcav, target_inputs

    adapter = _load(args)
    ds = load_dataset(args.data) if args.data else demo_dataset(adapter.modality)
    if ds.modality != adapter.modality:
        raise UserInputError(f"The data is {ds.modality} but {args.model} is a {adapter.modality} model.")
    targets = [adapter.labels[adapter.label_index(t)] for t in args.target]
    names = [n.strip() for n in args.concepts.split(",") if n.strip()]
    if not names:
        raise UserInputError("--concepts needs at least one concept set name.")
    concepts, pools = load_audit_concepts(names, args.concept_dir, adapter.modality)
    cfg = TCAVConfig(layers=parse_layers(args.layers, adapter.num_layers), num_cavs=args.num_cavs,
                     num_random=args.num_random, num_null=args.num_null,
                     weighting=args.weighting, test=args.test, correction=args.correction,
                     alpha=args.alpha, negatives=args.negatives, seed=args.seed,
                     batch_size=args.batch_size)
    cfg.validate()
    selected = {}
    for t in targets:  # check every target before spending time on any
        inputs, rule = target_inputs(ds.items, ds.labels, adapter, t, args.batch_size)
        if len(inputs) < cfg.min_inputs:
            raise UserInputError(f"Only {len(inputs)} inputs of class {t!r} in the data (by {rule}); "
                                 f"TCAV needs at least {cfg.min_inputs}.")
        selected[t] = (inputs[: args.limit] if args.limit else inputs, rule)
    summaries = []
    for t, (inputs, rule) in selected.items():
        print(f"{t}: {len(inputs)} inputs (selected by {rule})", file=sys.stderr)
        bar = _Bar(f"TCAV {t}")
        try:
            summaries.append(run_tcav(adapter, inputs, t, concepts, pools, cfg, progress=bar).summary)
        finally:
            bar.close()
    summary = apply_correction(pd.concat(summaries, ignore_index=True), cfg.correction, cfg.alpha)
    summary.insert(0, "model", adapter.spec)
    summary["seed"] = cfg.seed
    return summary


def format_summary(summary: pd.DataFrame) -> str:
    """A readable per-layer table: TCAV mean ± std, magnitude, p-values and significance."""
    lines = []
    for (target, concept, weighting), g in summary.groupby(["target", "concept", "weighting"], sort=False):
        lines.append(f"\n{concept} -> {target}  ({weighting} weighting, {g['test'].iloc[0]} test on "
                     f"{g['statistic'].iloc[0]}, {g['correction'].iloc[0]} correction, "
                     f"{int(g['n_inputs'].iloc[0])} inputs)")
        lines.append(f"  {'layer':>5} {'TCAV':>13} {'magnitude':>9} {'p':>7} {'p adj':>7} "
                     f"{'CAV acc':>7}  verdict")
        for r in g.itertuples():
            verdict = ("significant, " + r.direction) if r.significant else (
                "unreliable CAVs" if not r.reliable else "-")
            lines.append(f"  {r.layer:>5} {r.mean:>6.3f} ± {r.std:<5.3f} {r.magnitude_mean:>9.3f} "
                         f"{r.p_value:>7.4f} {r.p_adjusted:>7.4f} {r.cav_accuracy:>7.3f}  {verdict}")
    return "\n".join(lines)


def cmd_audit(args: argparse.Namespace) -> int:
    if args.csv:
        out = Path(args.csv)
        if out.parent and not out.parent.exists():
            raise UserInputError(f"Cannot write {out}: folder {out.parent} does not exist.")
    summary = run_audit_cli(args)
    print(format_summary(summary))
    if args.csv:
        tmp = Path(f"{args.csv}.partial")
        summary.to_csv(tmp, index=False)
        tmp.replace(args.csv)  # never leave a half-written CSV behind
        print(f"\nwrote {len(summary)} rows to {args.csv}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    """Add the `audit` subcommand."""
    from attnxai.cli import _model_args

    p = sub.add_parser("audit", help="TCAV audit: do target classes rely on concepts, per layer?")
    _model_args(p)
    p.add_argument("--data", help="dataset (CSV/TXT/JSONL, image folder or zip); default: demo data")
    p.add_argument("--target", action="append", required=True, help="class to audit (repeatable)")
    p.add_argument("--concepts", required=True, help="comma-separated concept set names")
    p.add_argument("--concept-dir", type=Path, default=None, help="folder of concept sets")
    p.add_argument("--layers", default="all", help="all, or a comma list like 0,3,5")
    p.add_argument("--num-cavs", type=int, default=20)
    p.add_argument("--num-random", type=int, default=10)
    p.add_argument("--num-null", type=int, default=200,
                   help="random-vs-random CAVs of the empirical null")
    p.add_argument("--weighting", default="both", choices=["attention", "plain", "both"])
    p.add_argument("--test", default="empirical", choices=["empirical", "welch", "one_sample"])
    p.add_argument("--correction", default="bh", choices=["bh", "bonferroni", "none"])
    p.add_argument("--alpha", type=float, default=0.05)
    p.add_argument("--negatives", default="auto", choices=["auto", "random", "relative", "matched"])
    p.add_argument("--limit", type=int, default=0, help="at most this many inputs per target")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--csv", help="write the summary CSV here")
    p.set_defaults(func=cmd_audit)

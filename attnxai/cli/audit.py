"""`attnxai audit`: TCAV of concepts for target classes, kept in the audit store."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from attnxai.audit.config import DEMO, AuditConfig
from attnxai.audit.engines import make_engine
from attnxai.audit.report import (detail_path, effects_frame, effects_path, export_paths,
                                  export_run, summary_frame)
from attnxai.audit.runner import run_audit
from attnxai.audit.verdicts import testable
from attnxai.audit.store import Store
from attnxai.cli.common import add_model_arguments
from attnxai.errors import UserInputError
from attnxai.cli.effect import format_effects
from attnxai.effects.config import EffectsConfig
from attnxai.io.outputs import check_outputs, input_files, store_files
from attnxai.tcav.config import TCAVConfig
from attnxai.options import choices, defaults, interval, is_flag

#: The TCAV settings `attnxai audit` takes as --options, with their help. Their choices or
#: number types and ranges come from the constraints table, their defaults from TCAVConfig.
TCAV_OPTIONS = {
    "num_cavs": "CAVs per concept and layer",
    "num_random": "random-vs-random CAVs reported as the random baseline",
    "num_null": "random-vs-random CAVs per pool and layer forming the null",
    "weighting": "token weighting: attention-weighted TCAV, plain token-level TCAV, or both",
    "test": "grouped: random-effects test against the null CAVs; see README",
    "statistic": "the per-CAV value the test compares",
    "correction": "multiple-testing correction across the whole run",
    "alpha": "significance level of the corrected p-values",
    "negatives": "auto: counterexamples of paired concepts, else the random pool",
    "pair_rows": "matched pairs train on the tokens where a pair differs, or on all tokens",
    "min_accuracy": "layers whose concept CAVs are less accurate are unreliable",
    "l2": "L2 penalty of each CAV's logistic regression",
    "holdout": "share of each CAV's examples held out to measure its accuracy",
    "pooling": "query row that weights the tokens",
    "cav": "logistic (filter) CAVs, or pattern CAVs (difference of the class means)",
    "matched_null": "null of matched-pair concepts: sign-flip CAVs of their own pairs, or the pool's",
    "seed": "seed of every random choice (negatives, splits, random CAVs)",
    "per_cav_scores": "also store S(x) of every concept CAV for every input (input_scores); by "
                      "default only its mean, std and positive share over a concept's CAVs",
}
#: The causal-effects settings `attnxai audit` takes as --options (defaults from EffectsConfig).
EFFECTS_OPTIONS = {
    "level": "causal effects: none; output (paired concepts' output effect); layers (also "
               "layer-wise activation patching); all (also CAV interventions of the others)",
    "paired_test": "test of the pairs' differences: sign_flip (of their mean) or wilcoxon",
    "patch_tokens": "patch the aligned tokens where a pair differs, or every aligned token",
    "intervention_cavs": "the concept's CAVs each CAV intervention moves (the first ones)",
    "intervention_null": "null CAVs each CAV intervention is tested against",
    "intervention_inputs": "at most this many target inputs per CAV intervention, spread over "
                           "them",
    "min_effect": "minimum relevant change of the target's probability: effects are tested "
                  "against it (relies / negligible / inconclusive)",
    "min_logit_effect": "minimum relevant change of the target's logit (logit effects, "
                        "patching, CAV interventions)",
}
#: Options whose flag is not their field's name.
_FLAGS = {"level": "--effects"}
# Checked by TCAVConfig.validate instead: whether it is bounded depends on --test.
_CONDITIONAL = ("num_null",)


def number_type(name: str) -> Callable[[str], Any]:
    """An argparse type for the number option ``name``: its kind, within its interval of the
    constraints table, so a bad value stops the command (exit 2) before the model loads."""
    bounds = interval(name)

    def parse(text: str) -> Any:
        try:
            value = bounds.kind(text)
        except ValueError:
            value = None
        if value is None or (name not in _CONDITIONAL and not bounds.accepts(value)):
            raise argparse.ArgumentTypeError(f"must be {bounds.describe()}, not {text!r}")
        return value

    parse.__name__ = bounds.kind.__name__  # argparse's word for the type in its messages
    return parse


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
    """A tqdm bar driven by the audit's (fraction, message) callback, with the run's own
    estimate of the time left (``time_left``) where tqdm would extrapolate the bar."""

    def __init__(self, desc: str) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=desc, file=sys.stderr, leave=False,
                        bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}{postfix}")
        self.left: float | None = None
        self.message = ""

    def __call__(self, fraction: float, message: str) -> None:
        self.bar.n = int(round(100 * fraction))
        self.message = message
        self._show()

    def time_left(self, seconds: float | None) -> None:
        self.left = seconds
        self._show()

    def _show(self) -> None:
        left = "" if self.left is None else f"<{self.bar.format_interval(self.left)} left, "
        self.bar.set_postfix_str(f"{left}{self.message}", refresh=True)

    def close(self) -> None:
        self.bar.close()


def audit_config(args: argparse.Namespace) -> AuditConfig:
    """The AuditConfig of an `attnxai audit` command line."""
    names = [n.strip() for n in args.concepts.split(",") if n.strip()]
    if not names:
        raise UserInputError("--concepts needs at least one concept set name.")
    tcav = TCAVConfig(layers=parse_layers(args.layers), batch_size=args.batch_size,
                      **{name: getattr(args, name) for name in TCAV_OPTIONS})
    effects = EffectsConfig(**{name: getattr(args, name) for name in EFFECTS_OPTIONS})
    return AuditConfig(model=args.model, datasets=tuple(args.data or [DEMO]),
                       targets=tuple(args.target), concepts=tuple(names), tcav=tcav,
                       effects=effects,
                       limit=args.limit,
                       concept_dir=str(args.concept_dir) if args.concept_dir else None,
                       device=args.device, trust_remote_code=args.trust_remote_code,
                       dtype=args.dtype)


def add_config_options(p: argparse.ArgumentParser, options: dict[str, str], config: type) -> None:
    """Add one --option per ``options`` entry: its choices, or its number type and range, from
    the constraints table (a switch: a bare --flag); its default from the ``config`` dataclass."""
    default = defaults(config)
    for name, text in options.items():
        flag = _FLAGS.get(name, "--" + name.replace("_", "-"))
        if is_flag(name):
            p.add_argument(flag, dest=name, action="store_true", default=default[name], help=text)
            continue
        try:
            kind: dict[str, Any] = {"choices": choices(name)}
        except KeyError:
            kind = {"type": number_type(name), "metavar": "N" if interval(name).kind is int else "X"}
        shown = "the model's own" if default[name] is None else default[name]
        p.add_argument(flag, dest=name, default=default[name],
                       help=f"{text} (default: {shown})", **kind)


def format_summary(summary: pd.DataFrame) -> str:
    """A readable per-layer table: TCAV mean ± std, magnitude, p-values and the verdict (★:
    the concept relies, ☆: TCAV alone is significant)."""
    lines = []
    keys = ["dataset", "target", "concept", "weighting"]
    for (dataset, target, concept, weighting), g in summary.groupby(keys, sort=False):
        lines.append(f"\n[{dataset}] {concept} -> {target}  ({weighting} weighting, "
                     f"{g['test'].iloc[0]} test on {g['statistic'].iloc[0]}, "
                     f"{g['correction'].iloc[0]} correction, {int(g['n_inputs'].iloc[0])} inputs)")
        lines.append(f"  {'layer':>5} {'TCAV':>13} {'magnitude':>9} {'p':>7} {'p adj':>7} "
                     f"{'CAV acc':>7}  verdict")
        for r in g.itertuples():
            relies = bool(getattr(r, "relies", False))
            verdict = (f"relies ★ ({r.direction})" if relies else
                       f"TCAV only ☆ ({r.direction})" if r.significant else (
                "not testable (no gradient reaches the players)" if not testable(r._asdict()) else
                "unreliable CAVs" if not r.reliable else "-"))
            lines.append(f"  {r.layer:>5} {r.mean:>6.3f} ± {r.std:<5.3f} {r.magnitude_mean:>9.3f} "
                         f"{r.p_value:>7.4f} {r.p_adjusted:>7.4f} {r.cav_accuracy:>7.3f}  {verdict}")
    return "\n".join(lines)


def cmd_audit(args: argparse.Namespace) -> int:
    """Run an audit; keep it in the --db store (if given) and write --csv (if given). Every
    output path is checked before the model loads."""
    config = audit_config(args)
    with contextlib.ExitStack() as stack:
        if args.db is None:  # not persisted: a throw-away store holds the run until exported
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="attnxai-audit-"))
            store = Store(Path(tmp) / "audit.duckdb")
        else:
            store = Store(args.db or None, notify=lambda m: print(m, file=sys.stderr))
        if args.csv:
            check_outputs(export_paths(args.csv, config.effects.level != "none", args.detail),
                          example="audit.csv",
                          protect={**store_files(store.path), **input_files(config.datasets)})
        if args.db is not None:
            store.schema_version()  # an unusable file fails now, before the model loads
        engine = make_engine(args.engine, address=args.address, num_gpus=args.num_gpus)
        stack.callback(engine.close)
        bar = _Bar("audit")
        try:
            run_id = run_audit(config, store, progress=bar, engine=engine,
                               time_left=bar.time_left)
        finally:
            bar.close()
        run = store.get_run(run_id)
        print(format_summary(summary_frame(store, run_id)))
        effects = effects_frame(store, run_id)
        if not effects.empty:
            print("\nCausal effects (docs/method.md §6; p-values corrected across the run's effects)")
            print(format_effects(effects))
        if args.csv:
            export_run(store, run_id, args.csv, detail=args.detail)
            written = [str(args.csv)]
            if config.effects.level != "none":
                written.append(str(effects_path(args.csv)))
            if args.detail:
                written.append(str(detail_path(args.csv)))
            print(f"\nwrote {', '.join(written)}", file=sys.stderr)
        if args.db is not None:
            print(f"run {run_id} saved to {store.path} ({run.duration_s:.1f} s; "
                  f"{run.activations_cached} examples' activations from the cache, "
                  f"{run.activations_computed} computed)", file=sys.stderr)
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
    add_config_options(p, TCAV_OPTIONS, TCAVConfig)
    add_config_options(p, EFFECTS_OPTIONS, EffectsConfig)
    p.add_argument("--limit", type=number_type("limit"), default=defaults(AuditConfig)["limit"],
                   metavar="N", help="at most this many inputs per target (default: 0, all)")
    p.add_argument("--engine", choices=choices("engine"), default="local",
                   help="where the example and target passes run: here, or sharded over Ray "
                        'workers (pip install "attnxai[ray]"; see README) (default: local)')
    p.add_argument("--address", default=None,
                   help="with --engine ray: the cluster to join (default: a running one, else a "
                        "local one)")
    p.add_argument("--num-gpus", type=number_type("num_gpus"), default=0.0, metavar="G",
                   help="with --engine ray: GPUs per worker (default: 0, CPU workers)")
    p.add_argument("--csv", help="write the summary CSV here")
    p.add_argument("--detail", action="store_true",
                   help="with --csv, also write the per-input CSV <name>.detail.csv")
    p.add_argument("--db", nargs="?", const="", default=None, metavar="PATH",
                   help="keep the run in this audit database (--db alone: "
                        "$ATTNXAI_HOME/audits.duckdb, default ~/.attnxai/audits.duckdb)")
    p.set_defaults(func=cmd_audit)

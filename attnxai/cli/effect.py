"""`attnxai effect`: the causal effect of paired concepts on target classes, on its own (no
audit store): the output effect of each concept's matched pairs and, layer by layer, how much
of it activation patching restores and removes (docs/method.md §6)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from attnxai.cli.common import add_model_arguments, load_model_from_args, write_csv_atomic
from attnxai.effects.config import EffectsConfig
from attnxai.effects.run import check_pairs, pair_effects
from attnxai.effects.table import correct_effects, effect_frame
from attnxai.errors import UserInputError
from attnxai.io.outputs import check_output
from attnxai.options import choices, defaults
from attnxai.tcav.config import TCAVConfig


def _layers(text: str) -> list[int] | None:
    if text.strip().lower() == "all":
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()] or None
    except ValueError:
        raise UserInputError(f"--layers must be 'all' or numbers like 0,3,5, not {text!r}.") from None


def format_effects(frame: pd.DataFrame) -> str:
    """The effects table as aligned text: one line per (target, concept, layer, measure), with
    the minimum relevant effect δ it was tested against and its verdict."""
    lines = [f"{'dataset':<10} {'target':<14} {'concept':<18} {'layer':>5} {'measure':<16} "
             f"{'mean':>9} {'95% interval':>21} {'δ':>6} {'p adj':>8} {'verdict':<26} "
             f"{'share':>6} {'pairs':>5}"]
    for r in frame.itertuples(index=False):
        share = "" if pd.isna(r.share) else f"{r.share:.2f}"
        layer = "out" if r.layer < 0 else str(r.layer)
        verdict = r.verdict if isinstance(r.verdict, str) else ""
        if verdict == "inconclusive" and pd.notna(r.n_needed):
            verdict += f" (~{int(r.n_needed)} pairs)"
        lines.append(f"{r.dataset:<10} {r.target:<14} {r.concept:<18} {layer:>5} {r.measure:<16} "
                     f"{r.mean:>9.4f} [{r.ci_low:>9.4f}, {r.ci_high:>9.4f}] {r.min_effect:>6.3g} "
                     f"{r.p_adjusted:>8.2g} {verdict:<26} {share:>6} {r.n_pairs:>5}")
    return "\n".join(lines)


def cmd_effect(args: argparse.Namespace) -> int:
    """Output effects and layer-wise patching of paired concepts, printed (and optional CSV)."""
    from attnxai.io.concepts import load_concept_set

    if args.effects == "none":
        raise UserInputError("--effects none computes nothing; use output, layers or all.")
    if args.csv:
        check_output(args.csv, example="effects.csv")
    names = [c.strip() for c in args.concepts.split(",") if c.strip()]
    if not names:
        raise UserInputError("--concepts needs at least one concept-set name.")
    layers = _layers(args.layers)
    concepts = [load_concept_set(n, args.concept_dir) for n in names]
    adapter = load_model_from_args(args)
    targets = list(args.target)
    for t in targets:
        adapter.label_index(t)
    for c in concepts:
        check_pairs(adapter, c, layers)
    cfg = EffectsConfig(level="layers" if args.effects == "all" else args.effects,
                        paired_test=args.test, patch_tokens=args.tokens,
                        min_effect=args.min_effect,
                        min_logit_effect=args.min_logit_effect).validate()
    rows = []
    for c in concepts:
        print(f"{c.name}: {len(c.examples)} pairs ...", file=sys.stderr)
        rows += pair_effects(adapter, c.name, c.examples, c.counterexamples, targets, cfg,
                             layers, seed=args.seed, batch_size=args.batch_size).rows
    frame = correct_effects(effect_frame(rows), args.correction, args.alpha)
    if args.csv:
        write_csv_atomic(Path(args.csv), frame)
    if args.json:
        print(json.dumps(json.loads(frame.to_json(orient="records")), indent=2))
    else:
        print(format_effects(frame))
    return 0


def register(sub: Any) -> None:
    """Add the `effect` subcommand."""
    p = sub.add_parser("effect", help="causal effect of paired concepts on target classes "
                                      "(output effect and layer-wise activation patching)")
    add_model_arguments(p)
    p.add_argument("--concepts", required=True, help="comma-separated paired concept sets")
    p.add_argument("--target", action="append", required=True, help="target class (repeatable)")
    p.add_argument("--layers", default="all", help="'all' or a comma list like 0,3,5")
    p.add_argument("--effects", choices=[c for c in choices("level") if c != "none"],
                   default="all", help="output (the output effect only), layers or all (also "
                                       "layer-wise patching)")
    p.add_argument("--test", choices=choices("paired_test"), default="sign_flip",
                   help="paired test of the differences (default sign_flip: of their mean)")
    p.add_argument("--tokens", choices=choices("patch_tokens"), default="differing",
                   help="patch the aligned tokens where a pair differs, or every aligned token")
    p.add_argument("--correction", choices=choices("correction"),
                   default=defaults(TCAVConfig)["correction"],
                   help="multiple-testing correction over the table's tests (families for "
                        "the two-level one: each concept's measures and layers)")
    p.add_argument("--alpha", type=float, default=0.05)
    effects = defaults(EffectsConfig)
    p.add_argument("--min-effect", type=float, default=effects["min_effect"], metavar="DP",
                   help="minimum relevant change of the target's probability (default "
                        f"{effects['min_effect']:g}); 0 tests only whether an effect is non-zero")
    p.add_argument("--min-logit-effect", type=float, default=effects["min_logit_effect"],
                   metavar="DL", help="the same for the logit and patching rows (default "
                                      f"{effects['min_logit_effect']:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sign-flip resampling")
    p.add_argument("--concept-dir", default=None, help="folder of concept sets")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_effect)

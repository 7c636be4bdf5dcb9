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
    """The effects table as aligned text: one line per (target, concept, layer, measure)."""
    lines = [f"{'dataset':<10} {'target':<14} {'concept':<18} {'layer':>5} {'measure':<14} {'mean':>9} "
             f"{'95% interval':>21} {'p':>8} {'p adj':>8} {'sig':>3} {'share':>6} {'pairs':>5}"]
    for r in frame.itertuples(index=False):
        share = "" if pd.isna(r.share) else f"{r.share:.2f}"
        layer = "out" if r.layer < 0 else str(r.layer)
        lines.append(f"{r.dataset:<10} {r.target:<14} {r.concept:<18} {layer:>5} {r.measure:<14} {r.mean:>9.4f} "
                     f"[{r.ci_low:>9.4f}, {r.ci_high:>9.4f}] {r.p_value:>8.2g} {r.p_adjusted:>8.2g} "
                     f"{'*' if r.significant else '':>3} {share:>6} {r.n_pairs:>5}")
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
                        paired_test=args.test, patch_tokens=args.tokens).validate()
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
    p.add_argument("--seed", type=int, default=0, help="seed of the sign-flip resampling")
    p.add_argument("--concept-dir", default=None, help="folder of concept sets")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_effect)

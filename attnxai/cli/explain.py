"""CLI commands for local explanations: `attnxai explain` and `attnxai evaluate`.

`register(sub)` adds them to the `attnxai` parser. User errors raise UserInputError (message,
exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from attnxai.cli.common import add_model_arguments, load_model_from_args, write_csv_atomic
from attnxai.errors import UserInputError
from attnxai.explain.baselines import METHODS, explain, get_method
from attnxai.explain.faithfulness import KS, evaluate_methods
from attnxai.io.datasets import demo_dataset, load_dataset
from attnxai.io.outputs import check_output, input_files

METHOD_OPTIONS = ("game", "source", "layers", "heads")


# -- explain -----------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace) -> int:
    """Attributions of one text or image: the players with their values and the prediction."""
    get_method(args.method)  # an unknown method fails before the model loads
    if args.text is not None and not args.text.strip():
        raise UserInputError("The text to explain is empty.")
    adapter = load_model_from_args(args)
    given = "text" if args.text is not None else "image"
    if adapter.modality != given:
        flag = "--text" if adapter.modality == "text" else "--image"
        raise UserInputError(f"{args.model} is a {adapter.modality} model; pass {flag}.")
    item = args.text if args.text is not None else args.image
    opts = {o: getattr(args, o) for o in METHOD_OPTIONS}
    attr = explain(adapter, [item], args.method, target=args.target, **opts)
    records = attr.records(0)
    ranked = sorted(records, key=lambda r: -r["value"])
    shown = ranked[: args.top] if args.top > 0 else ranked
    explained = int(attr.target[0])
    pred = int(attr.probs[0].argmax())
    doc = {
        "model": adapter.spec, "input": str(item), "method": args.method,
        "options": {o: v for o, v in opts.items() if v is not None},
        "prediction": adapter.labels[pred], "probability": round(float(attr.probs[0, pred]), 6),
        "explained_class": adapter.labels[explained],
        "explained_probability": round(float(attr.probs[0, explained]), 6),
        "num_players": len(records), "sum": sum(r["value"] for r in records),
        "players": shown,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    opt_text = ", ".join(f"{o} {v}" for o, v in doc["options"].items())
    print(f"model: {adapter.spec}   method: {args.method}" + (f" ({opt_text})" if opt_text else ""))
    print(f"prediction: {doc['prediction']} (p = {doc['probability']:.3f})"
          + ("" if explained == pred else f"; explaining {doc['explained_class']} "
                                  f"(p = {doc['explained_probability']:.3f})"))
    kind = "word pieces" if adapter.modality == "text" else "patches"
    print(f"{len(records)} {kind}; sum of values {doc['sum']:.6g}; "
          f"showing {len(shown)} with the largest values")
    width = max([len(r["player"]) for r in shown] + [6])
    print(f"{'rank':>4}  {'player':<{width}}  {'pos':>4}  {'value':>12}")
    for i, r in enumerate(shown, 1):
        print(f"{i:>4}  {r['player']:<{width}}  {r['position']:>4}  {r['value']:>12.6g}")
    return 0


# -- evaluate ----------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    """Faithfulness (comprehensiveness, sufficiency, F1@20) of each method over a dataset."""
    methods = args.methods or list(METHODS)
    for m in methods:
        get_method(m)
    if args.limit < 0:
        raise UserInputError("--limit must be 0 (everything) or a positive number.")
    if args.csv:
        check_output(args.csv, example="faithfulness.csv", protect=input_files([args.data]))
    adapter = load_model_from_args(args)
    ds = demo_dataset(adapter.modality) if args.data == "demo" else load_dataset(args.data)
    if ds.modality != adapter.modality:
        raise UserInputError(f"{args.data} holds {ds.modality} data but {args.model} is a "
                             f"{adapter.modality} model.")
    n = min(args.limit, len(ds)) if args.limit else len(ds)
    inputs, labels = ds.items[:n], (ds.labels[:n] if ds.labels else None)
    options = _method_options(methods, args)
    print(f"evaluating {len(methods)} methods on {n} inputs ...", file=sys.stderr)
    rows = evaluate_methods(adapter, inputs, labels, methods, options, batch_size=args.batch_size)
    if args.csv:
        write_csv_atomic(Path(args.csv), [r.as_dict() for r in rows])
    if args.json:
        print(json.dumps({"model": adapter.spec, "data": args.data, "n_inputs": n,
                          "ks_percent": list(KS), "options": options,
                          "results": [r.as_dict() for r in rows]}, indent=2))
        return 0
    print(format_evaluation(rows))
    note = f"model {adapter.spec}, data {args.data}, {n} inputs; K = {{{','.join(map(str, KS))}}}%."
    if rows[0].f1_full is not None:
        note += f" F1 of full-input predictions: {rows[0].f1_full:.3f}."
    else:
        note += " F1 needs gold labels that are the model's classes: none here."
    print(note)
    if args.csv:
        print(f"wrote {args.csv}")
    return 0


def _method_options(methods: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each method's share of the attention and sampling options given on the command line."""
    given = {k: getattr(args, k) for k in (*METHOD_OPTIONS, "permutations", "steps")}
    given = {k: v for k, v in given.items() if v is not None}
    for name in ("permutations", "steps"):
        if given.get(name, 1) < 1:
            raise UserInputError(f"--{name} must be at least 1.")
    used = set()
    out: dict[str, dict[str, Any]] = {}
    for m in methods:
        opts = {k: v for k, v in given.items() if k in get_method(m).options}
        used |= set(opts)
        out[m] = opts
    unused = sorted(set(given) - used)
    if unused:
        raise UserInputError(f"--{unused[0]} does not apply to any of the methods evaluated "
                             f"({', '.join(methods)}).")
    return out


def format_evaluation(rows: list[Any]) -> str:
    """The method table of `attnxai evaluate`."""
    head = (f"{'method':<22} {'comprehensiveness ↑':>21} {'sufficiency ↓':>21} "
            f"{'F1@20':>6} {'s/input':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        f1 = "n/a" if r.f1_at_20 is None else f"{r.f1_at_20:.3f}"
        lines.append(f"{r.method:<22} {r.comprehensiveness:>11.4f} ± {r.comprehensiveness_std:<7.4f} "
                     f"{r.sufficiency:>11.4f} ± {r.sufficiency_std:<7.4f} {f1:>6} "
                     f"{r.seconds_per_input:>9.4f}")
    return "\n".join(lines)


# -- parser ------------------------------------------------------------------------------------
def _attention_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--game", default=None, help="attention-Shapley game: cls | mutual | "
                                                  "max_mutual (default max_mutual)")
    p.add_argument("--source", default=None, help="attention | grad_attention (default attention)")
    p.add_argument("--layers", type=int, nargs="+", default=None,
                   help="layers to aggregate (default all; negative counts from the end)")
    p.add_argument("--heads", type=int, nargs="+", default=None, help="heads (default all)")


def register(sub: Any) -> None:
    """Add `explain` and `evaluate` to the `attnxai` subparsers."""
    methods = ", ".join(METHODS)
    p = sub.add_parser("explain", help="explain one prediction (attention-Shapley or a baseline)")
    add_model_arguments(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="the text to explain")
    src.add_argument("--image", help="the image file to explain")
    p.add_argument("--method", default="attention-shapley", help=f"one of: {methods}")
    _attention_options(p)
    p.add_argument("--target", default=None, help="class to explain (default: the predicted one)")
    p.add_argument("--top", type=int, default=10, help="players to show (0 = all)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("evaluate", help="faithfulness of explanation methods over a dataset")
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="a dataset file or folder, or 'demo'")
    p.add_argument("--methods", nargs="+", default=None, help=f"default all: {methods}")
    p.add_argument("--limit", type=int, default=0, help="at most this many inputs (0 = all)")
    _attention_options(p)
    p.add_argument("--permutations", type=int, default=None,
                   help="input-shapley: permutations for inputs too long to enumerate")
    p.add_argument("--steps", type=int, default=None, help="integrated-gradients: steps")
    p.add_argument("--csv", default=None, help="also write the table to this CSV file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_evaluate)

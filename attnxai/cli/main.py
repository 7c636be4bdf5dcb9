"""The `attnxai` command line. User errors print one clear sentence and exit with code 2; any
other exception is an internal error: one sentence and exit code 1, or its traceback when
``ATTNXAI_DEBUG=1``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from attnxai.cli import audit as cli_audit
from attnxai.cli import bench as cli_bench
from attnxai.cli import effect as cli_effect
from attnxai.cli import explain as cli_explain
from attnxai.cli import store as cli_store
from attnxai.cli.common import (EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, add_model_arguments,
                                load_model_from_args, quiet_libraries)
from attnxai.errors import UserInputError


# -- commands ----------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    """Predicted classes for texts or images."""
    from attnxai.io.datasets import load_dataset

    adapter = load_model_from_args(args)
    if adapter.modality == "text" and args.image or adapter.modality == "image" and args.text:
        raise UserInputError(f"{args.model} is a {adapter.modality} model; pass "
                             f"{'--text' if adapter.modality == 'text' else '--image'}.")
    if args.text:
        inputs: list[Any] = list(args.text)
        names = [t if len(t) <= 60 else t[:57] + "..." for t in inputs]
    elif args.image:
        inputs, names = list(args.image), list(args.image)
    else:
        ds = load_dataset(args.data)
        if ds.modality != adapter.modality:
            raise UserInputError(f"{args.data} holds {ds.modality} data but {args.model} is "
                                 f"a {adapter.modality} model.")
        inputs = ds.items[: args.limit] if args.limit else ds.items
        names = [str(x)[:60] for x in inputs]
    probs = adapter.predict(inputs)
    top = probs.topk(min(args.top, probs.shape[1]), dim=1)
    rows = [{"input": name,
             "prediction": adapter.labels[int(idx[0])],
             "probability": round(float(p[0]), 4),
             "top": [{"label": adapter.labels[int(i)], "probability": round(float(q), 4)}
                     for q, i in zip(p, idx)]}
            for name, p, idx in zip(names, top.values, top.indices)]
    if args.json:
        print(json.dumps({"model": adapter.spec, "predictions": rows}, indent=2))
    else:
        width = max(len(r["input"]) for r in rows)
        for r in rows:
            others = ", ".join(f"{t['label']} {t['probability']:.2f}" for t in r["top"][1:])
            print(f"{r['input']:<{width}}  {r['prediction']:<20} {r['probability']:.3f}"
                  + (f"   ({others})" if others else ""))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """A model's summary and card."""
    adapter = load_model_from_args(args)
    print(json.dumps({**adapter.describe(), "card": adapter.card}, indent=2, default=str))
    return 0


def cmd_train_shapes(args: argparse.Namespace) -> int:
    """Retrain the built-in shapes-vit (delegates to attnxai.shapes.train)."""
    from attnxai.shapes.train import main as train_main

    return train_main(args.rest)


# -- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The `attnxai` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="attnxai",
        description="Audit transformer models with attention-weighted TCAV and attention-Shapley.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="predict classes for texts or images")
    add_model_arguments(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    src.add_argument("--image", action="append", help="an image file to classify (repeatable)")
    src.add_argument("--data", help="a dataset file or folder (CSV/TXT/JSONL, image folder or zip)")
    p.add_argument("--limit", type=int, default=0, help="at most this many dataset items")
    p.add_argument("--top", type=int, default=3, help="how many classes to show per input")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="show a model's summary and card")
    add_model_arguments(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train-shapes", help="retrain the built-in shapes-vit (seeded)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="arguments of python -m attnxai.shapes.train (--out DIR --seed N ...)")
    p.set_defaults(func=cmd_train_shapes)

    cli_bench.register(sub)
    cli_effect.register(sub)
    cli_explain.register(sub)
    cli_audit.register(sub)
    cli_store.register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line. `train-shapes` hands everything after its name to the
    trainer's own parser: argparse's REMAINDER would refuse a leading option (``--out``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train-shapes"]:
        return argparse.Namespace(command="train-shapes", func=cmd_train_shapes, rest=argv[1:])
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `attnxai` console script."""
    args = parse_args(argv)
    quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except UserInputError as e:
        print(f"attnxai: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("attnxai: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - a bug of ours: one sentence, not a traceback
        if os.environ.get("ATTNXAI_DEBUG") == "1":
            raise
        print(internal_error_message(e), file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def internal_error_message(e: Exception) -> str:
    """The one sentence shown for an unexpected exception."""
    text = " ".join(str(e).split())[:500] or "no details"
    return (f"attnxai: internal error ({type(e).__name__}: {text}); this is a bug in attnxai, "
            "please report it with the command you ran (ATTNXAI_DEBUG=1 shows the traceback).")


if __name__ == "__main__":
    sys.exit(main())

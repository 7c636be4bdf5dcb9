"""The `attnxai` command line. User errors print one clear sentence and exit with code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from attnxai.errors import UserInputError

EXIT_USER_ERROR = 2


def _quiet_libraries() -> None:
    # Library progress bars and warnings would drown the CLI's own output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _load(args: argparse.Namespace):
    from attnxai.models import load_model

    return load_model(args.model, device=args.device, batch_size=args.batch_size,
                      trust_remote_code=getattr(args, "trust_remote_code", False))


# -- commands ----------------------------------------------------------------------------------
def cmd_predict(args: argparse.Namespace) -> int:
    """Predicted classes for texts or images."""
    from attnxai.data import load_dataset

    adapter = _load(args)
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
    adapter = _load(args)
    print(json.dumps({**adapter.describe(), "card": adapter.card}, indent=2, default=str))
    return 0


def cmd_train_shapes(args: argparse.Namespace) -> int:
    """Retrain the built-in shapes-vit (delegates to attnxai.shapes.train)."""
    from attnxai.shapes.train import main as train_main

    return train_main(args.rest)


def cmd_bench(args: argparse.Namespace) -> int:
    """`attnxai bench capture`: capture vs bare forward+backward vs per-sample loop."""
    from attnxai.bench import bench_capture, format_capture_table
    from attnxai.data import demo_dataset
    from attnxai.models import load_model

    rows = []
    for spec in args.models:
        adapter = load_model(spec, device=args.device)
        items = demo_dataset(adapter.modality).items
        inputs = [items[i % len(items)] for i in range(args.n)]
        print(f"benchmarking {spec} on {len(inputs)} demo inputs ...", file=sys.stderr)
        rows.append(bench_capture(adapter, inputs, batch_size=args.batch_size, repeats=args.repeats))
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_capture_table(rows))
    return 0


def cmd_bench_tcav(args: argparse.Namespace) -> int:
    """`attnxai bench tcav`: demo audits of the built-ins, timed."""
    from attnxai.bench import bench_tcav, format_tcav_table

    rows = []
    for spec in args.models:
        print(f"benchmarking a demo audit of {spec} ...", file=sys.stderr)
        rows.append(bench_tcav(spec, device=args.device, num_cavs=args.num_cavs,
                               num_random=args.num_random))
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json else format_tcav_table(rows))
    return 0


# -- parser ------------------------------------------------------------------------------------
def _model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, default=None if required else "builtin:minilm-zeroshot",
                   help="builtin:minilm-zeroshot | builtin:shapes-vit | HF id or folder | "
                        "timm:<name>[@checkpoint.safetensors]")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a Hugging Face model's own code to run (off by default)")


def build_parser() -> argparse.ArgumentParser:
    from attnxai import cli_audit, cli_explain, cli_store  # imported here: they reuse this module's helpers

    parser = argparse.ArgumentParser(
        prog="attnxai",
        description="Audit transformer models with attention-weighted TCAV and attention-Shapley.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="predict classes for texts or images")
    _model_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", action="append", help="a text to classify (repeatable)")
    src.add_argument("--image", action="append", help="an image file to classify (repeatable)")
    src.add_argument("--data", help="a dataset file or folder (CSV/TXT/JSONL, image folder or zip)")
    p.add_argument("--limit", type=int, default=0, help="at most this many dataset items")
    p.add_argument("--top", type=int, default=3, help="how many classes to show per input")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("info", help="show a model's summary and card")
    _model_args(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train-shapes", help="retrain the built-in shapes-vit (seeded)",
                       add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER,
                   help="arguments of python -m attnxai.shapes.train (--out DIR --seed N ...)")
    p.set_defaults(func=cmd_train_shapes)

    p = sub.add_parser("bench", help="benchmarks (reported as ratios)")
    bench_sub = p.add_subparsers(dest="bench", required=True)
    b = bench_sub.add_parser("capture", help="capture vs bare forward+backward vs per-sample loop")
    b.add_argument("--models", nargs="+", default=["builtin:minilm-zeroshot", "builtin:shapes-vit"])
    b.add_argument("--device", default=None)
    b.add_argument("--n", type=int, default=64, help="inputs per model")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
    b = bench_sub.add_parser("tcav", help="demo TCAV audits: time split and batching ratios")
    b.add_argument("--models", nargs="+", default=["builtin:minilm-zeroshot", "builtin:shapes-vit"])
    b.add_argument("--device", default=None)
    b.add_argument("--num-cavs", type=int, default=20)
    b.add_argument("--num-random", type=int, default=10)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_tcav)
    b = bench_sub.add_parser("shapley", help="exact attention-Shapley: closed form vs enumeration, "
                                             "share of a forward pass, sampling error")
    cli_explain.bench_shapley_arguments(b)

    cli_explain.register(sub)
    cli_audit.register(sub)
    cli_store.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `attnxai` console script."""
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except UserInputError as e:
        print(f"attnxai: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("attnxai: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

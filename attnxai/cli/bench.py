"""`attnxai bench ...`: benchmarks reported as ratios measured in one run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def cmd_bench(args: argparse.Namespace) -> int:
    """`attnxai bench capture`: capture vs bare forward+backward vs per-sample loop."""
    from attnxai.bench.capture import bench_capture, format_capture_table
    from attnxai.io.datasets import demo_dataset
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
    from attnxai.bench.tcav import bench_tcav, format_tcav_table

    rows = []
    for spec in args.models:
        print(f"benchmarking a demo audit of {spec} ...", file=sys.stderr)
        rows.append(bench_tcav(spec, device=args.device, num_cavs=args.num_cavs,
                               num_random=args.num_random))
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json else format_tcav_table(rows))
    return 0


def cmd_bench_shapley(args: argparse.Namespace) -> int:
    """`attnxai bench shapley`: closed form vs enumeration, share of a forward pass, sampling."""
    from attnxai.bench.shapley import bench_shapley

    return bench_shapley(args)


def cmd_bench_effects(args: argparse.Namespace) -> int:
    """`attnxai bench effects`: cost of pair effects vs the target capture; placebo calibration."""
    from attnxai.bench.effects import bench_effects_cost, bench_placebo, format_effects_tables

    costs, placebos = [], []
    for spec in args.models:
        print(f"timing the pair effects of {spec} ...", file=sys.stderr)
        costs.append(bench_effects_cost(spec, device=args.device))
        if args.trials:
            print(f"placebo calibration of {spec}: {args.trials} trials x {args.pairs} pairs ...",
                  file=sys.stderr)
            placebos.append(bench_placebo(spec, args.trials, args.pairs, device=args.device))
    if args.json:
        print(json.dumps({"cost": [c.as_dict() for c in costs],
                          "placebo": [p.as_dict() for p in placebos]}, indent=2))
    else:
        print(format_effects_tables(costs, placebos))
    return 0


def register(sub: Any) -> None:
    """Add `attnxai bench` and its benchmarks to the top-level subparsers."""
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
    b.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    b.add_argument("--batch", type=int, default=8, help="inputs per forward pass")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_shapley)
    b = bench_sub.add_parser("effects", help="causal effects: cost against the target capture, "
                                             "placebo calibration of the paired tests")
    b.add_argument("--models", nargs="+", default=["builtin:minilm-zeroshot", "builtin:shapes-vit"])
    b.add_argument("--device", default=None)
    b.add_argument("--trials", type=int, default=400, help="placebo trials per model (0 = skip)")
    b.add_argument("--pairs", type=int, default=50, help="pairs per placebo trial")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_effects)

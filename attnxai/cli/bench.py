"""`attnxai bench ...`: benchmarks reported as ratios measured in one run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any



def _log(message: str) -> None:
    """A benchmark's progress line, on stderr as it happens."""
    print(message, file=sys.stderr, flush=True)

def cmd_bench(args: argparse.Namespace) -> int:
    """`attnxai bench capture`: capture vs bare forward+backward vs per-sample loop; with
    ``--memory``, peak memory of full attention matrices against readout rows."""
    from attnxai.bench.capture import (bench_capture, bench_capture_memory, format_capture_table,
                                       format_memory_table)
    from attnxai.io.datasets import demo_dataset
    from attnxai.models import load_model

    if args.memory:
        memory = bench_capture_memory(tuple(args.lengths), device=args.device)
        print(json.dumps([r.as_dict() for r in memory], indent=2) if args.json
              else format_memory_table(memory))
        return 0

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
        costs.append(bench_effects_cost(spec, device=args.device, tcav=not args.no_tcav))
        if args.trials:
            print(f"placebo calibration of {spec}: {args.trials} trials x {args.pairs} pairs ...",
                  file=sys.stderr)
            placebos.append(bench_placebo(spec, args.trials, args.pairs, seed=args.seed,
                                          device=args.device))
    if args.json:
        print(json.dumps({"cost": [c.as_dict() for c in costs],
                          "placebo": [p.as_dict() for p in placebos]}, indent=2))
    else:
        print(format_effects_tables(costs, placebos))
    return 0


def cmd_bench_seeds(args: argparse.Namespace) -> int:
    """`attnxai bench seeds`: planted and control verdicts of shapes-vit over many seeds."""
    from attnxai.bench.seeds import bench_seeds, format_seeds

    result = bench_seeds(args.model, args.seeds, tuple(args.nulls), args.effect_seeds,
                         device=args.device, log=_log)
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_seeds(result))
    return 0


def cmd_bench_intervention(args: argparse.Namespace) -> int:
    """`attnxai bench intervention`: false-positive rate of CAV interventions on random concepts,
    and their verdicts on shapes-vit's planted concept and control without their pairs."""
    from attnxai.bench.seeds import bench_intervention_fpr, bench_intervention_truth

    result = truth = None
    if args.random_concepts:
        result = bench_intervention_fpr(args.model, args.target, args.random_concepts,
                                        tuple(args.layers), runs=args.runs,
                                        null_sizes=tuple(args.null_sizes), device=args.device,
                                        log=_log)
    if args.truth_seeds:
        truth = bench_intervention_truth(seeds=args.truth_seeds, device=args.device, log=_log)
    if args.json:
        print(json.dumps({"random_concepts": result.as_dict() if result else None,
                          "ground_truth": truth.as_dict() if truth else None}, indent=2))
        return 0
    if result:
        print(f"{result.model} / {result.target}: {result.random_concepts} random concepts in "
              f"{result.runs} runs x {len(result.layers)} layers; share of CAV interventions "
              f"significant (p < 0.05, uncorrected; target <= 5%):")
        for n, rate in result.rate.items():
            per = ", ".join(f"layer {l}: {100 * r:.1f}%" for l, r in result.rate_per_layer[n].items())
            print(f"  null of {n} CAVs: {100 * rate:.1f}% +- {100 * result.rate_se[n]:.1f} ({per}); "
                  f"standardised spread: {result.variance_ratio[n]:.2f} (fits: "
                  f"{result.variance_ratio_expected[n]:.2f})")
        print("+-: one standard error over the runs x layers draws of the null; standardised "
              "spread: the variance within a draw of the concepts' means, each standardised by "
              "the grouped test's model (what it is when the model fits, in brackets)")
    if truth:
        print(f"{truth.model} / {truth.target}, concepts without their pairs, {truth.seeds} seeds "
              "at the defaults: seeds with a significant CAV intervention (after correction)")
        for c, role in ((truth.planted, "planted"), (truth.control, "control")):
            print(f"  {c} ({role}): {truth.significant[c]}/{truth.seeds}; min adjusted p per "
                  f"seed {' '.join(f'{p:.3g}' for p in truth.min_p_adjusted[c])}; mean effect "
                  f"per layer {' '.join(f'{m:+.4f}' for m in truth.mean_per_layer[c])}")
    return 0


def cmd_bench_bridge(args: argparse.Namespace) -> int:
    """`attnxai bench bridge`: TCAV's derivative times the concept's step against the measured
    CAV intervention, and the pairs' output effect beside them."""
    from attnxai.bench.bridge import bench_bridge, format_bridge

    result = bench_bridge(args.model, args.target, tuple(args.concepts.split(",")),
                          tuple(args.layers) if args.layers else None, args.inputs,
                          seed=args.seed, device=args.device)
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_bridge(result))
    return 0


def cmd_bench_truth(args: argparse.Namespace) -> int:
    """`attnxai bench truth`: every method's verdicts on the ground-truth zoo, δ chosen
    leave-one-model-out."""
    from attnxai.bench.truth import bench_truth, format_truth
    from attnxai.errors import UserInputError
    from attnxai.zoo.members import ZOO

    names = {m.name: m for m in ZOO}
    unknown = [n for n in args.models if n not in names]
    if unknown:
        raise UserInputError(f"No zoo model {unknown[0]!r}; the zoo has {', '.join(names)}.")
    members = [names[n] for n in args.models] if args.models else list(ZOO)
    if len(members) < 2:
        raise UserInputError("Leave-one-model-out needs at least two zoo models.")
    result = bench_truth(members, args.seeds, args.zoo_dir, log=_log)
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_truth(result))
    return 0


def cmd_bench_scale(args: argparse.Namespace) -> int:
    """`attnxai bench scale`: audits of N generated inputs: time, peak RSS, database per input."""
    from attnxai.bench.scale import bench_scale, format_scale_table

    rows = []
    for spec in args.models:
        print(f"scale audits of {spec} at N = {', '.join(map(str, args.n))} ...", file=sys.stderr)
        rows += bench_scale(spec, tuple(args.n), device=args.device,
                            log=_log)
    print(json.dumps([r.as_dict() for r in rows], indent=2) if args.json
          else format_scale_table(rows))
    return 0


def cmd_bench_audit(args: argparse.Namespace) -> int:
    """`attnxai bench audit`: one audit of any model, stage by stage, and its time left."""
    from attnxai.bench.audit import bench_audit, format_audit_bench

    concepts = tuple(c.strip() for c in args.concepts.split(",") if c.strip()) \
        if args.concepts else None
    _log(f"benchmarking an audit of {args.model} ...")
    result = bench_audit(args.model, args.target, concepts, device=args.device,
                         effects=args.effects, dtype=args.dtype, batch_size=args.batch_size,
                         log=_log)
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_audit_bench(result))
    return 0


def cmd_bench_cavs(args: argparse.Namespace) -> int:
    """`attnxai bench cavs`: pattern vs logistic CAVs: calibration, power, alignment, cost."""
    from attnxai.bench.cavs import bench_cavs, format_cavs_table

    result = bench_cavs(args.random_concepts, args.chunk, tuple(args.kinds), tuple(args.models),
                        device=args.device, seed=args.seed, log=sys.stderr)
    print(json.dumps(result.as_dict(), indent=2) if args.json else format_cavs_table(result))
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
    b.add_argument("--memory", action="store_true",
                   help="instead: peak memory of a decoder's capture, full attention matrices "
                        "against the readout rows TCAV needs")
    b.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048],
                   help="input lengths in tokens (--memory)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
    b = bench_sub.add_parser("tcav", help="demo TCAV audits: time split and batching ratios")
    b.add_argument("--models", nargs="+", default=["builtin:minilm-zeroshot", "builtin:shapes-vit"])
    b.add_argument("--device", default=None)
    b.add_argument("--num-cavs", type=int, default=20)
    b.add_argument("--num-random", type=int, default=10)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_tcav)
    b = bench_sub.add_parser("scale", help="audits of N generated inputs (default settings, 4 "
                                           "concepts, all layers, no effects): time per input, "
                                           "peak RSS, database bytes per input")
    b.add_argument("--models", nargs="+", default=["builtin:minilm-zeroshot", "builtin:shapes-vit"])
    b.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000],
                   help="numbers of inputs, one audit each (default: 100 1000 10000)")
    b.add_argument("--device", default=None)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_scale)
    b = bench_sub.add_parser("audit", help="one audit of any model: each stage's seconds against "
                                           "its floor of passes, peak RSS, time left said vs "
                                           "actual")
    b.add_argument("--model", default="builtin:minilm-zeroshot",
                   help="any model spec, or random:bert-base / random:vit-b16 (random weights "
                        "at base size, built offline)")
    b.add_argument("--target", default=None, help="default: sports (text), triangle (images)")
    b.add_argument("--concepts", default=None,
                   help="comma-separated; default: sports-words,finance-words,weather,negation "
                        "(text), striped-objects,red-objects (images)")
    b.add_argument("--effects", default="all", choices=["all", "output", "layers", "none"])
    b.add_argument("--device", default=None)
    b.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_audit)
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
    b.add_argument("--no-tcav", action="store_true",
                   help="skip timing the concept's TCAV at the defaults (a minute or two)")
    b.add_argument("--seed", type=int, default=0,
                   help="seed of the placebo pairs and coins (another seed: independent trials)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_effects)
    b = bench_sub.add_parser("cavs", help="pattern vs logistic CAVs: calibration on random "
                                          "concepts, power, alignment with matched pairs, cost")
    b.add_argument("--random-concepts", type=int, default=400,
                   help="random concepts for the calibration (0 = skip; default 400)")
    b.add_argument("--chunk", type=int, default=50,
                   help="random concepts per run, each run with its own seed and null CAVs")
    b.add_argument("--kinds", nargs="+", default=["logistic", "pattern"],
                   choices=["logistic", "pattern"])
    b.add_argument("--models", nargs="+", default=["builtin:minilm-zeroshot", "builtin:shapes-vit"],
                   choices=["builtin:minilm-zeroshot", "builtin:shapes-vit"],
                   help="built-ins whose demo audits measure power and alignment")
    b.add_argument("--device", default=None)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_cavs)
    b = bench_sub.add_parser("seeds", help="planted vs control verdicts over seeds, per null of "
                                           "matched pairs, with the pairs' output effects")
    b.add_argument("--model", default="builtin:shapes-vit")
    b.add_argument("--seeds", type=int, default=20)
    b.add_argument("--nulls", nargs="+", default=["pool", "sign_flip"], choices=["pool", "sign_flip"])
    b.add_argument("--effect-seeds", type=int, default=5)
    b.add_argument("--device", default=None)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_seeds)
    b = bench_sub.add_parser("intervention", help="CAV interventions' false-positive rate on "
                                                  "random concepts (the README's protocol)")
    b.add_argument("--model", default="builtin:minilm-zeroshot")
    b.add_argument("--target", default="sports")
    b.add_argument("--random-concepts", type=int, default=200, help="0 = skip the calibration")
    b.add_argument("--layers", type=int, nargs="+", default=[1, 3, 5])
    b.add_argument("--runs", type=int, default=20,
                   help="runs the concepts are split over, each with its own seed and null")
    b.add_argument("--null-sizes", type=int, nargs="+", default=[40],
                   help="null CAVs per intervention test (whole groups of 4), each measured")
    b.add_argument("--truth-seeds", type=int, default=5,
                   help="seeds of the ground truth on shapes-vit (planted and control concepts "
                        "without their pairs; 0 = skip)")
    b.add_argument("--device", default=None)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_intervention)
    b = bench_sub.add_parser("bridge", help="TCAV's derivative times the concept's step (first "
                                            "order) against the measured CAV intervention")
    b.add_argument("--model", default="builtin:shapes-vit")
    b.add_argument("--target", default="triangle")
    b.add_argument("--concepts", default="striped-objects,red-objects",
                   help="comma-separated concept sets (paired ones also get their pairs' effect)")
    b.add_argument("--layers", type=int, nargs="+", default=None, help="default: every layer")
    b.add_argument("--inputs", type=int, default=32, help="target inputs of the demo data")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default=None)
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_bridge)
    b = bench_sub.add_parser("truth", help="every method's verdicts on the ground-truth zoo; the "
                                           "minimum relevant effect chosen leave-one-model-out")
    b.add_argument("--models", nargs="+", default=[], help="zoo models (default: all)")
    b.add_argument("--seeds", type=int, default=3, help="audit seeds per model")
    b.add_argument("--zoo-dir", default=None,
                   help="cache of the zoo's trained models (default: $ATTNXAI_ZOO or "
                        "~/.cache/attnxai/zoo)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench_truth)

"""CLI commands for local explanations: `attnxai explain`, `attnxai evaluate`, `attnxai bench shapley`.

`register(sub)` adds the first two to the `attnxai` parser; `bench_shapley_arguments(p)` fills
the `bench shapley` subparser. User errors raise UserInputError (message, exit code 2).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from attnxai.baselines import METHODS, explain, get_method
from attnxai.cli import _load, _model_args
from attnxai.data import demo_dataset, load_dataset
from attnxai.errors import UserInputError
from attnxai.faithfulness import KS, evaluate_methods
from attnxai.models import load_model
from attnxai.models.vision import TimmViT
from attnxai.shapley import (
    aggregate_attention,
    attention_shapley,
    enumerate_shapley,
    game_value_fn,
    sample_shapley,
)

METHOD_OPTIONS = ("game", "source", "layers", "heads")


# -- explain -----------------------------------------------------------------------------------
def cmd_explain(args: argparse.Namespace) -> int:
    """Attributions of one text or image: the players with their values and the prediction."""
    get_method(args.method)  # an unknown method fails before the model loads
    if args.text is not None and not args.text.strip():
        raise UserInputError("The text to explain is empty.")
    adapter = _load(args)
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
    if args.csv and not Path(args.csv).parent.is_dir():
        raise UserInputError(f"Cannot write {args.csv}: folder {Path(args.csv).parent} does not exist.")
    adapter = _load(args)
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
        _write_csv_atomic(Path(args.csv), [r.as_dict() for r in rows])
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


def _write_csv_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the CSV next to its destination and rename it, so a failure leaves no half file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- bench shapley -----------------------------------------------------------------------------
def _best_time(fn: Callable[[], Any], repeats: int, device: torch.device | None = None) -> float:
    """Best wall time of `repeats` runs after one warm-up."""
    fn()
    best = math.inf
    for _ in range(repeats):
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_enumeration(sizes: tuple[int, ...] = (12, 14), seed: int = 0) -> list[dict[str, Any]]:
    """Closed form vs exhaustive enumeration of the max_mutual game on random matrices."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n in sizes:
        M = torch.rand(n, n, generator=gen, dtype=torch.float64)
        closed = _best_time(lambda: attention_shapley(M, "max_mutual"), 20)
        v = game_value_fn(M, "max_mutual")
        # Vectorised: all 2^n coalitions in one value call. Looped: one call per coalition,
        # as the paper's reference code evaluates them.
        enum = _best_time(lambda: enumerate_shapley(v, n), 3)
        looped = _best_time(lambda: enumerate_shapley(v, n, chunk=1), 1)
        err = float((attention_shapley(M, "max_mutual") - enumerate_shapley(v, n).values).abs().max())
        rows.append({"n": n, "enumeration_s": enum, "looped_enumeration_s": looped,
                     "closed_form_s": closed, "enumeration_over_closed_form": enum / closed,
                     "looped_over_closed_form": looped / closed, "max_abs_diff": err})
    return rows


def _long_texts(adapter: Any, tokens: int, count: int) -> list[str]:
    """`count` different demo-headline texts of at least `tokens` word pieces."""
    items = demo_dataset("text").items
    texts = []
    for i in range(count):
        words: list[str] = []
        j = i
        while len(adapter.tokenizer.tokenize(" ".join(words))) < tokens:
            words.append(items[j % len(items)])
            j += 1
        texts.append(" ".join(words))
    return texts


def bench_share(adapter: Any, inputs: list[Any], repeats: int) -> dict[str, Any]:
    """Closed-form attention-Shapley time as a share of the model's forward pass (one batch)."""
    batch = adapter.prepare(inputs)
    dev = adapter.device

    def forward() -> None:
        with torch.no_grad():
            adapter.forward_logits(batch)

    fwd = _best_time(forward, repeats, dev)
    cap = adapter.capture(inputs, grads=False, batch_size=len(inputs))
    agg = _best_time(lambda: aggregate_attention(cap), repeats)
    game = aggregate_attention(cap)
    # The closed form runs where the model runs (the matrices are moved there first).
    M, pm = game.matrix.to(dev), game.player_mask.to(dev)
    closed = _best_time(lambda: attention_shapley(M, "max_mutual", player_mask=pm), repeats, dev)
    return {"model": adapter.spec, "device": str(dev), "batch": len(inputs),
            "players": int(pm.sum(1).max()), "forward_s": fwd, "closed_form_s": closed,
            "aggregate_s": agg, "closed_form_share": closed / fwd,
            "aggregate_plus_closed_share": (agg + closed) / fwd}


def bench_sampling(n: int = 20, perms: tuple[int, ...] = (10, 30, 100, 300, 1000), seed: int = 0
                   ) -> list[dict[str, Any]]:
    """Permutation-sampling error against the exact values, by number of permutations."""
    M = torch.rand(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    exact = attention_shapley(M, "max_mutual")
    rows = []
    for p in perms:
        est = sample_shapley(game_value_fn(M, "max_mutual"), n, p, seed=seed + 1)
        err = (est.values - exact).abs()
        rows.append({"n": n, "permutations": p, "evaluations": est.num_evaluations,
                     "mean_abs_error": float(err.mean()), "max_abs_error": float(err.max()),
                     "mean_stderr": float(est.stderr.mean()),
                     "within_3_stderr": float((err <= 3 * est.stderr).double().mean()),
                     "mean_abs_value": float(exact.abs().mean())})
    return rows


def _vit_b16(device: str | None) -> Any:
    """A randomly initialised timm ViT-B/16 at 224 px (196 patches): timing only."""
    import timm

    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=10)
    return TimmViT(model, "timm:vit_base_patch16_224 (random weights)", device=device,
                   labels=[f"class_{i}" for i in range(10)])


def bench_shapley(args: argparse.Namespace) -> int:
    """`attnxai bench shapley`: closed form vs enumeration, share of a forward pass, sampling."""
    enum_rows = bench_enumeration()
    print("timing the closed form against forward passes ...", file=sys.stderr)
    torch.manual_seed(0)
    vit = _vit_b16(args.device)
    images = [Image.fromarray((torch.rand(224, 224, 3) * 255).byte().numpy())
              for _ in range(args.batch)]
    share_rows = [bench_share(vit, images, args.repeats)]
    del vit
    minilm = load_model("builtin:minilm-zeroshot", device=args.device)
    share_rows.append(bench_share(minilm, _long_texts(minilm, 510, args.batch), args.repeats))
    sample_rows = bench_sampling()
    if args.json:
        print(json.dumps({"enumeration": enum_rows, "forward_share": share_rows,
                          "sampling": sample_rows}, indent=2))
        return 0
    print("Closed form vs enumeration of all 2^n coalitions (max_mutual, random M, float64);")
    print("enumeration vectorised (one call for all coalitions) and looped (one per coalition)")
    print(f"{'n':>4} {'closed form s':>14} {'vectorised s':>13} {'ratio':>8} {'looped s':>9} "
          f"{'ratio':>9} {'max |diff|':>11}")
    for r in enum_rows:
        print(f"{r['n']:>4} {r['closed_form_s']:>14.2e} {r['enumeration_s']:>13.4f} "
              f"{r['enumeration_over_closed_form']:>7.0f}x {r['looped_enumeration_s']:>9.3f} "
              f"{r['looped_over_closed_form']:>8.0f}x {r['max_abs_diff']:>11.1e}")
    print("\nClosed form as a share of the model's forward pass on the same batch (target <= 5%)")
    print(f"{'model':<44} {'dev':<5} {'B':>3} {'n':>4} {'forward s':>10} {'closed s':>10} "
          f"{'share':>7} {'+aggregate':>11}")
    for r in share_rows:
        print(f"{r['model']:<44} {r['device']:<5} {r['batch']:>3} {r['players']:>4} "
              f"{r['forward_s']:>10.4f} {r['closed_form_s']:>10.2e} "
              f"{100 * r['closed_form_share']:>6.2f}% {100 * r['aggregate_plus_closed_share']:>10.2f}%")
    print("('+aggregate': building M from the captured attentions of all layers and heads, "
          "plus the closed form)")
    print("\nPermutation sampling vs the exact values (max_mutual, n = 20, random M; "
          f"mean |phi| = {sample_rows[0]['mean_abs_value']:.3f})")
    print(f"{'perms':>6} {'evals':>7} {'mean |err|':>11} {'max |err|':>10} {'mean stderr':>12} "
          f"{'within 3 se':>12}")
    for r in sample_rows:
        print(f"{r['permutations']:>6} {r['evaluations']:>7} {r['mean_abs_error']:>11.4f} "
              f"{r['max_abs_error']:>10.4f} {r['mean_stderr']:>12.4f} "
              f"{100 * r['within_3_stderr']:>11.0f}%")
    return 0


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
    _model_args(p)
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
    _model_args(p)
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


def bench_shapley_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `attnxai bench shapley`."""
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch", type=int, default=8, help="inputs per forward pass")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=bench_shapley)

"""`attnxai bench shapley`: the closed form against enumeration, its share of a forward pass,
and the error of permutation sampling."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import torch
from PIL import Image

from attnxai.bench.timing import best_time
from attnxai.explain.shapley import (aggregate_attention, attention_shapley, enumerate_shapley,
                                     game_value_fn, sample_shapley)
from attnxai.io.datasets import demo_dataset
from attnxai.models import load_model
from attnxai.models.vision import TimmViT


def bench_enumeration(sizes: tuple[int, ...] = (12, 14), seed: int = 0) -> list[dict[str, Any]]:
    """Closed form vs exhaustive enumeration of the max_mutual game on random matrices."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for n in sizes:
        M = torch.rand(n, n, generator=gen, dtype=torch.float64)
        closed = best_time(lambda: attention_shapley(M, "max_mutual"), None, 20)
        v = game_value_fn(M, "max_mutual")
        # Vectorised: all 2^n coalitions in one value call. Looped: one call per coalition,
        # as the paper's reference code evaluates them.
        enum = best_time(lambda: enumerate_shapley(v, n), None, 3)
        looped = best_time(lambda: enumerate_shapley(v, n, chunk=1), None, 1)
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

    fwd = best_time(forward, dev, repeats)
    cap = adapter.capture(inputs, grads=False, batch_size=len(inputs))
    agg = best_time(lambda: aggregate_attention(cap), None, repeats)
    game = aggregate_attention(cap)
    # The closed form runs where the model runs (the matrices are moved there first).
    M, pm = game.matrix.to(dev), game.player_mask.to(dev)
    closed = best_time(lambda: attention_shapley(M, "max_mutual", player_mask=pm), dev, repeats)
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

"""`attnxai bench effects`: what causal effects cost, and how often their paired tests reject
when there is nothing to find.

- cost: output effect + layer-wise patching (both ways) of a built-in's demo pairs at every
  layer, as a ratio of the audit's capture of the target inputs (forward + backward), beside
  the ratio the work alone predicts (``work_ratio``). In block passes: per pair, one plain pass
  of each member through the L blocks, then per direction and layer l the blocks after l, since
  those up to l are replayed: 2L + L(L-1) = L(L+1), that is (L+1)/2 plain passes of both
  members. So ``work_ratio`` = (L+1)/2 x (the timed plain passes of every pair's two members)
  / (the timed capture), whatever the implementation. Beside it, the same effects as a share of
  the concept's own TCAV at the defaults (CAVs for every layer, null CAVs, target scoring: what
  an audit of the concept already spends), one run of it;
- placebo calibration: many trials of pairs with no effect by construction; each pair's two
  members are drawn alike and which one counts as "with" is a fair coin, so the differences
  are symmetric around zero and a calibrated test rejects in 5% of trials at α = 0.05.
  shapes-vit: the same generated scene with two textures other than the planted stripes;
  MiniLM: two sentences of the random-text pool.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from attnxai.effects.config import EffectsConfig
from attnxai.effects.run import pair_effects
from attnxai.io.concepts import load_audit_concepts, load_concept_set
from attnxai.io.datasets import demo_dataset
from attnxai.models import load_model
from attnxai.stats import PAIRED_TESTS, paired_p_values
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import run_tcav, target_inputs

#: Per built-in: (target class, the paired concept whose pairs are timed).
DEMO_PAIRS = {"builtin:minilm-zeroshot": ("sports", "negation"),
              "builtin:shapes-vit": ("triangle", "striped-objects")}


@dataclass
class EffectsCostBench:
    """Output effect + patching of one built-in's demo pairs against its target capture."""

    model: str
    target: str
    n_pairs: int
    layers: int
    effects_s: float
    target_inputs: int
    target_capture_s: float
    effects_over_capture: float  # target <= 1
    members_forward_s: float  # one plain forward pass of every pair's two members
    work_ratio: float  # the ratio the block passes alone predict (module docstring)
    tcav_s: float  # the concept's TCAV at the defaults, one run (nan when not measured)
    effects_over_tcav: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _seconds(work: Callable[[], Any]) -> float:
    """Wall time of one run of ``work``."""
    t0 = time.perf_counter()
    work()
    return time.perf_counter() - t0


def bench_effects_cost(spec: str, device: str | None = None, repeats: int = 5,
                       tcav: bool = True) -> EffectsCostBench:
    """Time the pair effects of a built-in's demo concept against the audit's target capture
    (each the median of ``repeats`` interleaved runs: one run of under a second is noise) and,
    with ``tcav``, against one run of the concept's TCAV at the defaults."""
    adapter = load_model(spec, device=device)
    target, concept = DEMO_PAIRS[spec]
    cs = load_concept_set(concept)
    ds = demo_dataset(adapter.modality)
    inputs, _ = target_inputs(ds.items, ds.labels, adapter, target)
    cfg = EffectsConfig(level="layers")

    def effects() -> None:
        pair_effects(adapter, concept, cs.examples, cs.counterexamples, [target], cfg)

    def capture() -> None:
        adapter.capture(inputs, target=target)

    @torch.no_grad()
    def forward() -> None:
        adapter.logits(list(cs.examples))
        adapter.logits(list(cs.counterexamples))

    works = (effects, capture, forward)
    for work in works:  # warm-up
        work()
    # Interleaved, so a change in the machine's load hits all three alike.
    times = np.array([[_seconds(work) for work in works] for _ in range(repeats)])
    effects_s, capture_s, forward_s = np.median(times, axis=0).tolist()
    tcav_s = float("nan")
    if tcav:
        concepts, pools = load_audit_concepts([concept], None, adapter.modality)
        tcav_s = _seconds(lambda: run_tcav(adapter, inputs, target, concepts, pools, TCAVConfig()))
    n, L = len(cs.examples), adapter.num_layers
    return EffectsCostBench(spec, target, n, L, effects_s, len(inputs), capture_s,
                            effects_s / capture_s, forward_s,
                            (L + 1) / 2 * forward_s / capture_s, tcav_s, effects_s / tcav_s)


@dataclass
class PlaceboBench:
    """Share of placebo trials a paired test rejects at α = 0.05 (target <= 5%)."""

    model: str
    target: str
    trials: int
    pairs_per_trial: int
    rejection: dict[str, float]  # "test/measure" -> share of trials with p < 0.05

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _placebo_members(spec: str, n: int, seed: int) -> tuple[list[Any], list[Any]]:
    """2 x n members of placebo pairs (see the module docstring)."""
    rng = np.random.default_rng(seed)
    if spec == "builtin:shapes-vit":
        from PIL import Image

        from attnxai.shapes.render import TEXTURES, render_scene, sample_scene

        plain = [t for t in TEXTURES if t != "striped"]
        a, b = [], []
        for _ in range(n):
            first, second = rng.choice(len(plain), size=2, replace=False)
            scene = sample_scene(rng, texture=plain[first])
            a.append(Image.fromarray(render_scene(scene)))
            b.append(Image.fromarray(render_scene(replace(scene, texture=plain[second]))))
        return a, b
    pool = load_concept_set("random-text").examples
    idx = [rng.choice(len(pool), size=2, replace=False) for _ in range(n)]
    return [pool[i] for i, _ in idx], [pool[j] for _, j in idx]


def bench_placebo(spec: str, trials: int = 100, pairs: int = 50, seed: int = 0,
                  device: str | None = None) -> PlaceboBench:
    """Rejection rates of the paired tests on placebo pairs, per test and measure."""
    adapter = load_model(spec, device=device)
    target = DEMO_PAIRS[spec][0]
    k = adapter.label_index(target)
    a, b = _placebo_members(spec, trials * pairs, seed)
    la, lb = adapter.logits(list(a)), adapter.logits(list(b))
    coin = np.random.default_rng(seed + 1).random(len(a)) < 0.5  # which member is "with"
    sign = np.where(coin, 1.0, -1.0)
    measures = {"logit": (la - lb)[:, k].numpy(),
                "prob": (la.softmax(-1) - lb.softmax(-1))[:, k].numpy()}
    rejection = {}
    for name, delta in measures.items():
        d = (sign * delta).reshape(trials, pairs).T  # [pairs, trials]
        for test in PAIRED_TESTS:
            p = paired_p_values(d, test, seed)
            rejection[f"{test}/{name}"] = float(np.mean(p < 0.05))
    return PlaceboBench(spec, target, trials, pairs, rejection)


def format_effects_tables(costs: list[EffectsCostBench], placebos: list[PlaceboBench]) -> str:
    """Plain-text tables of both benchmarks with their targets."""
    lines = [f"{'model':<26} {'target':<9} {'pairs':>5} {'L':>2} {'effects s':>9} "
             f"{'inputs':>6} {'capture s':>9} {'effects/capture':>15} {'work predicts':>13} "
             f"{'TCAV s':>7} {'effects/TCAV':>12}"]
    for c in costs:
        lines.append(f"{c.model:<26} {c.target:<9} {c.n_pairs:>5} {c.layers:>2} {c.effects_s:>9.2f} "
                     f"{c.target_inputs:>6} {c.target_capture_s:>9.2f} {c.effects_over_capture:>14.2f}x "
                     f"{c.work_ratio:>12.2f}x {c.tcav_s:>7.1f} {100 * c.effects_over_tcav:>11.1f}%")
    lines.append("target: output effect + patching of every layer both ways <= 1x the target capture;"
                 " 'work predicts': (L+1)/2 plain passes of both members of every pair, timed,"
                 " over the capture; effects/TCAV: over one run of the concept's TCAV at the"
                 " defaults")
    if placebos:
        keys = list(placebos[0].rejection)
        lines.append("")
        lines.append(f"{'model':<26} {'trials':>6} {'pairs':>5} " + " ".join(f"{k:>18}" for k in keys))
        for p in placebos:
            lines.append(f"{p.model:<26} {p.trials:>6} {p.pairs_per_trial:>5} "
                         + " ".join(f"{100 * p.rejection[k]:>17.1f}%" for k in keys))
        lines.append("placebo pairs: share of trials rejected at alpha = 0.05 (target <= 5%)")
    return "\n".join(lines)

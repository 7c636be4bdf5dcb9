"""`attnxai bench bridge`: TCAV's gradient in output units. A CAV's directional derivatives,
summed over the player tokens and times the concept's own step (its projection gap), predict
to first order what the CAV intervention measures; this bench checks the prediction against
the measured intervention, CAV by CAV, and sets both beside the output effect of the concept's
matched pairs (docs/method.md §6.5)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from attnxai.effects.config import EffectsConfig
from attnxai.effects.intervention import cav_intervention, first_order_intervention
from attnxai.effects.run import pair_effects
from attnxai.io.concepts import load_concept_set
from attnxai.io.datasets import demo_dataset
from attnxai.models import load_model
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import run_tcav, target_inputs


@dataclass
class BridgeBench:
    """Per layer and CAV kind: the mean step, first-order prediction and measured intervention
    (mean change of the target logit), their correlation over every CAV of the layer, and each
    paired concept's output effect on the logit."""

    model: str
    target: str
    n_inputs: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    correlation: dict[int, float] = field(default_factory=dict)
    pair_effect: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)


def bench_bridge(spec: str = "builtin:shapes-vit", target: str = "triangle",
                 concepts: tuple[str, ...] = ("striped-objects", "red-objects"),
                 layers: tuple[int, ...] | None = None, inputs: int = 32, num_cavs: int = 5,
                 num_null: int = 20, seed: int = 0, device: str | None = None) -> BridgeBench:
    """First-order prediction against measured CAV intervention on ``spec``'s demo data."""
    adapter = load_model(spec, device=device)
    ds = demo_dataset(adapter.modality)
    items, _ = target_inputs(ds.items, ds.labels, adapter, target)
    items = list(items)[:inputs]
    sets = [load_concept_set(n) for n in concepts]
    pools = {c.default_pool: load_concept_set(c.default_pool) for c in sets if c.default_pool}
    out = BridgeBench(spec, target, len(items))
    for c in sets:
        if c.paired and c.counterexamples:
            effect = pair_effects(adapter, c.name, c.examples, c.counterexamples, [target],
                                  EffectsConfig(level="output"), seed=seed)
            out.pair_effect[c.name] = float(effect.outputs.delta_logit[
                :, adapter.label_index(target)].mean())
    # CAVs from the concepts' examples against the random pool (as without pairs): the
    # directions a CAV intervention pushes along.
    unpaired = [replace(c, paired=False, counterexamples=[]) for c in sets]
    tcav = TCAVConfig(layers=layers, num_cavs=num_cavs, num_null=num_null, seed=seed)
    result = run_tcav(adapter, items, target, unpaired, pools, tcav)
    cap = adapter.capture(items, target=target)
    for j, layer in enumerate(result.layers):
        directions, steps = result.directions[j], result.gaps[j]
        predicted = first_order_intervention(cap.grad_activations[layer], cap.valid_mask,
                                             directions, steps).mean(0).numpy()
        measured = cav_intervention(adapter, items, target, layer, directions.float(),
                                    steps.float()).mean(0).numpy()
        # A layer no gradient reaches (the last block of a [CLS]-read ViT) has no correlation.
        live = predicted.std() > 0 and measured.std() > 0
        out.correlation[layer] = (float(np.corrcoef(predicted, measured)[0, 1]) if live
                                  else float("nan"))
        names = pd.Series([s.name for s in result.specs])
        for name, idx in names.groupby(names).groups.items():
            idx = list(idx)
            out.rows.append({"layer": layer, "cavs": name, "n": len(idx),
                             "step": float(steps[idx].mean()),
                             "first_order": float(predicted[idx].mean()),
                             "measured": float(measured[idx].mean()),
                             "max_abs_error": float(np.abs(predicted[idx] - measured[idx]).max())})
    return out


def format_bridge(b: BridgeBench) -> str:
    """The bench as text: one line per layer and CAV kind."""
    lines = [f"{b.model} / {b.target}: {b.n_inputs} target inputs; mean change of the target "
             "logit when every player token moves along a CAV by the concept's own step"]
    lines.append(f"{'layer':>5}  {'CAVs':<26} {'n':>3} {'step':>7} {'first-order':>12} "
                 f"{'measured':>10} {'max |error|':>12}")
    for r in b.rows:
        lines.append(f"{r['layer']:>5}  {r['cavs']:<26} {r['n']:>3} {r['step']:>7.3f} "
                     f"{r['first_order']:>+12.4f} {r['measured']:>+10.4f} "
                     f"{r['max_abs_error']:>12.2g}")
    lines.append("correlation of first-order and measured over every CAV of the layer: " +
                 ", ".join(f"layer {l}: {c:.4f}" for l, c in b.correlation.items()))
    if b.pair_effect:
        lines.append("output effect of the matched pairs on the logit (inserting the concept): " +
                     ", ".join(f"{n} {v:+.3f}" for n, v in b.pair_effect.items()))
    return "\n".join(lines)

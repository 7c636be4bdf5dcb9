"""`attnxai bench tcav`: demo TCAV audits of the built-ins, timed stage by stage."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from attnxai.bench.timing import best_time, measure_peak_memory


#: The demo audits `attnxai bench tcav` times: 4 concepts per built-in.
DEMO_AUDITS = {
    "builtin:minilm-zeroshot": ("sports", ["sports-words", "finance-words", "weather", "negation"]),
    "builtin:shapes-vit": (None, ["striped-objects", "red-objects", "striped", "dotted"]),
}


@dataclass
class TCAVBench:
    """One demo audit: where the time goes, and the two batching ratios."""

    model: str
    target: str
    n_inputs: int
    layers: int
    cavs_per_layer: int
    total_s: float
    example_activations_s: float
    cav_training_s: float
    target_capture_s: float
    scoring_s: float
    loop_over_capture: float  # per-sample capture loop / batched capture of the target inputs
    sklearn_over_batched: float  # one scikit-learn fit per CAV / one batched solve (one layer)
    sklearn_cavs_timed: int  # scikit-learn fits timed (the rest extrapolated per CAV)
    peak_mem_mb: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sklearn_cav_seconds(table: Any, specs: list, seed: int, l2: float, holdout: float,
                        limit: int) -> tuple[float, int]:
    """Seconds per CAV of the classic recipe: one scikit-learn LogisticRegression per CAV,
    on the same rows, splits and objective as the batched solver (timed on `limit` CAVs)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from attnxai.tcav.cav import split_examples

    X = table.rows - table.rows.mean(0)
    X = (X / (X.pow(2).sum(1).mean().sqrt() / np.sqrt(X.shape[1]))).numpy()
    ex = table.example.numpy()
    rng = np.random.default_rng(seed)
    chosen = specs[:limit]
    t0 = time.perf_counter()
    for spec in chosen:
        pos_tr, _, neg_tr, _ = split_examples(spec, holdout, rng)
        rows = np.isin(ex, np.concatenate([pos_tr, neg_tr]))
        LogisticRegression(C=1.0 / (l2 * rows.sum()), class_weight="balanced",
                           max_iter=1000).fit(X[rows], np.isin(ex[rows], pos_tr))
    return (time.perf_counter() - t0) / len(chosen), len(chosen)


def bench_tcav(spec: str, device: str | None = None, num_cavs: int = 20, num_random: int = 10,
               sklearn_limit: int = 40, seed: int = 0) -> TCAVBench:
    """Time a demo audit of a built-in with the default test and all layers."""
    from attnxai.tcav.cav import train_cavs
    from attnxai.io.concepts import load_audit_concepts
    from attnxai.io.datasets import demo_dataset
    from attnxai.models import load_model
    from attnxai.tcav.run import TCAVConfig, cav_tables, plan_cavs, run_tcav, target_inputs

    adapter = load_model(spec, device=device)
    target, names = DEMO_AUDITS[spec]
    target = target or adapter.card.get("planted_class") or adapter.labels[0]
    concepts, pools = load_audit_concepts(names, None, adapter.modality)
    ds = demo_dataset(adapter.modality)
    inputs, _ = target_inputs(ds.items, ds.labels, adapter, target)
    cfg = TCAVConfig(num_cavs=num_cavs, num_random=num_random, seed=seed)
    holder: list[Any] = []
    peak = measure_peak_memory(lambda: holder.append(run_tcav(adapter, inputs, target, concepts,
                                                              pools, cfg)), adapter.device)
    t = holder[0].timings
    # Batching ratios, measured on their own so each side runs alone.
    loop = best_time(lambda: [adapter.capture([x], target=target) for x in inputs], adapter.device, 1)
    batched = best_time(lambda: adapter.capture(inputs, target=target), adapter.device, 1)
    plan = plan_cavs(concepts, pools, cfg)
    layer = adapter.num_layers // 2
    table = cav_tables(adapter, plan, [layer], cfg.batch_size)[0]  # the rows the audit trains on
    solve = best_time(lambda: train_cavs(table, plan.specs, seed, cfg.l2, cfg.holdout, adapter.device),
                   adapter.device, 1)
    per_cav, timed = sklearn_cav_seconds(table, plan.specs, seed, cfg.l2, cfg.holdout, sklearn_limit)
    return TCAVBench(
        model=spec, target=str(target), n_inputs=len(inputs), layers=adapter.num_layers,
        cavs_per_layer=int(t["num_cavs_per_layer"]), total_s=t["total_s"],
        example_activations_s=t["example_activations_s"], cav_training_s=t["cav_training_s"],
        target_capture_s=t["target_capture_s"], scoring_s=t["scoring_s"],
        loop_over_capture=loop / batched, sklearn_over_batched=per_cav * len(plan.specs) / solve,
        sklearn_cavs_timed=timed, peak_mem_mb=peak)


def format_tcav_table(rows: list[TCAVBench]) -> str:
    """A plain-text table of TCAV demo-audit benchmarks with the targets."""
    head = (f"{'model':<24} {'target':<9} {'n':>3} {'L':>2} {'CAVs/L':>6} {'total s':>8} "
            f"{'examples':>8} {'CAVs':>7} {'capture':>7} {'scoring':>7} {'loop/cap':>8} "
            f"{'sk/batch':>8} {'peak MB':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}"
        lines.append(
            f"{r.model:<24} {r.target:<9} {r.n_inputs:>3} {r.layers:>2} {r.cavs_per_layer:>6} "
            f"{r.total_s:>8.1f} {r.example_activations_s:>8.1f} {r.cav_training_s:>7.1f} "
            f"{r.target_capture_s:>7.2f} {r.scoring_s:>7.3f} {r.loop_over_capture:>7.1f}x "
            f"{r.sklearn_over_batched:>7.1f}x {peak:>7}")
    lines.append("targets: total <= 60 s on 2 CPU cores, per-sample loop/capture >= 4x, "
                 "scikit-learn per CAV/batched >= 20x (scikit-learn timed on "
                 f"{rows[0].sklearn_cavs_timed if rows else 0} CAVs, extrapolated per CAV)")
    return "\n".join(lines)

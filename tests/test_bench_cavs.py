"""`attnxai bench cavs` at a tiny size on a tiny model: the activation cache, the calibration
loop, the audit figures, the table and the CLI entry, and the alignment (cosine between a
concept's mean CAV and its pairs' mean activation difference over the differing tokens)
against an independent numpy computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import attnxai
from attnxai.bench.cavs import (KINDS, CachedActivations, CAVBench, alignment, audit_figures,
                                calibration, format_cavs_table, matched_tables, random_concepts)
from attnxai.io.concepts import ConceptSet
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import example_tables, run_tcav

FILLER = ("the a team won lost match market stocks rose fell sun good bad new game bank rates "
          "city storm cup final price share profit player").split()
WITH, WITHOUT = "goal", "rain"  # one word swapped: the pair differs in exactly one token


def _sentence(rng: np.random.Generator) -> list[str]:
    return [str(w) for w in rng.choice(FILLER, size=int(rng.integers(4, 7)))]


@pytest.fixture(scope="module")
def setup(tiny_bert_dir):
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    rng = np.random.default_rng(0)
    pool = ConceptSet(name="pool", modality="text", kind="random_pool",
                      examples=[" ".join(_sentence(rng)) for _ in range(60)])
    ex, cf = [], []
    for _ in range(12):
        words = _sentence(rng)
        i = int(rng.integers(len(words)))
        ex.append(" ".join(words[:i] + [WITH] + words[i + 1:]))
        cf.append(" ".join(words[:i] + [WITHOUT] + words[i + 1:]))
    swap = ConceptSet(name="swap", modality="text", examples=ex, counterexamples=cf,
                      paired=True, default_pool="pool")
    plain = ConceptSet(name="plain", modality="text", examples=ex[:10], default_pool="pool")
    inputs = [" ".join(_sentence(rng)) for _ in range(6)]
    return adapter, pool, [swap, plain], inputs


def _cfg(kind: str) -> TCAVConfig:
    return TCAVConfig(num_cavs=3, num_random=4, num_null=20, seed=0, cav=kind)


def test_cached_activations_equal_forward_passes(setup):
    adapter, pool, _, _ = setup
    items = pool.examples[5:9] + pool.examples[:3] + pool.examples[5:6]  # any order, repeats
    cache = CachedActivations(adapter)
    cache(pool.examples[:2], [0])  # a first call with other items and layers
    for got, want in zip(cache(items, [2, 0]), example_tables(adapter, items, [2, 0], None, None)):
        torch.testing.assert_close(got.rows, want.rows, atol=1e-5, rtol=1e-4)
        assert torch.equal(got.example, want.example)


@pytest.mark.parametrize("kind", KINDS)
def test_alignment_against_numpy(setup, kind):
    adapter, pool, concepts, inputs = setup
    cfg = _cfg(kind)
    result = run_tcav(adapter, inputs, "positive", concepts, {"pool": pool}, cfg)
    tables, pairs = matched_tables(adapter, concepts, {"pool": pool}, cfg, result.layers)
    assert set(pairs) == {"swap"}
    got = alignment(result, tables, pairs, ["swap"])["swap"]

    # Independently: the swapped token is the one position where the two token ids differ.
    swap = concepts[0]
    a = adapter.capture(swap.examples, grads=False)
    b = adapter.capture(swap.counterexamples, grads=False)
    ids_a = adapter.prepare(swap.examples).model_inputs["input_ids"].numpy()
    ids_b = adapter.prepare(swap.counterexamples).model_inputs["input_ids"].numpy()
    pos = [int(np.flatnonzero(ra != rb)[0]) for ra, rb in zip(ids_a, ids_b)]
    assert all(int((ra != rb).sum()) == 1 for ra, rb in zip(ids_a, ids_b))
    keep = [k for k, s in enumerate(result.specs) if s.kind == "concept" and s.name == "swap"]
    for j, layer in enumerate(result.layers):
        acts_a, acts_b = a.activations[layer].numpy(), b.activations[layer].numpy()
        truth = np.mean([acts_a[i, p] - acts_b[i, p] for i, p in enumerate(pos)], axis=0)
        cav = result.directions[j, keep].numpy().astype(np.float64).mean(0)
        expected = cav @ truth / (np.linalg.norm(cav) * np.linalg.norm(truth))
        assert got[j] == pytest.approx(expected, abs=1e-4)
    if kind == "pattern":  # a difference of means over subsets of the same pairs
        assert min(got) > 0.8, got

    fig = audit_figures(adapter, "tiny", inputs, "positive", concepts, {"pool": pool}, cfg,
                        ["swap"])
    np.testing.assert_allclose(fig.alignment["swap"], got, atol=1e-5)
    assert set(fig.significant) == {"swap", "plain"} and fig.cavs_per_layer == len(result.specs)
    assert len(fig.random_negative_alignment["swap"]) == adapter.num_layers
    assert all(-1 <= c <= 1 for c in fig.random_negative_alignment["swap"])
    assert fig.cav_s_per_layer >= 0


def test_calibration_table_and_cli(setup):
    from attnxai.cli import bench as cli_bench
    from attnxai.cli.main import build_parser

    adapter, pool, concepts, inputs = setup
    randoms = random_concepts(pool, 4, 10, seed=0)
    assert all(len(c.examples) == 10 and set(c.examples) <= set(pool.examples) for c in randoms)
    acts = CachedActivations(adapter)
    cals = [calibration(adapter, inputs, "positive", pool, kind, randoms, [0, 2], num_cavs=2,
                        num_null=20, chunk=3, activations=acts) for kind in KINDS]
    for c in cals:
        assert c.n_concepts == 4 and c.n_tests == 8 and set(c.by_layer) == {0, 2}
        assert 0 <= c.false_positive_rate <= 1 and c.cavs_per_layer == 3 * 2 + 20
    figs = [audit_figures(adapter, "tiny", inputs, "positive", concepts, {"pool": pool},
                          _cfg(kind), ["swap"], acts) for kind in KINDS]
    table = format_cavs_table(CAVBench(calibration=cals, audits=figs, seconds=1.0))
    assert "false-positive rate, 4 random concepts" in table
    assert "`logistic`" in table.splitlines()[0] and "`pattern`" in table.splitlines()[0]
    assert "cos(CAV, pair direction)" in table
    args = build_parser().parse_args(["bench", "cavs", "--random-concepts", "5"])
    assert args.func is cli_bench.cmd_bench_cavs and args.random_concepts == 5

"""Streaming TCAV: the sufficient statistics kept batch by batch give the same tables as the
whole CAVs x inputs matrix of S(x) computed at once, and per-CAV rows are kept only on request."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

import attnxai
from attnxai.io.concepts import ConceptSet
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.run import run_tcav
from attnxai.tcav.scores import capture_scores, tcav_magnitude, tcav_sign
from attnxai.tcav.stream import ScoreStats
from conftest import VOCAB

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]
CFG = TCAVConfig(num_cavs=3, num_random=2, num_null=20, batch_size=4, per_cav_scores=True)


def _sentences(rng: np.random.Generator, n: int, words: list[str]) -> list[str]:
    return [" ".join(rng.choice(words, int(rng.integers(3, 8)))) for _ in range(n)]


@pytest.fixture(scope="module")
def audit(tiny_bert_dir):
    rng = np.random.default_rng(0)
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    pool = ConceptSet("pool", "text", _sentences(rng, 60, WORDS), kind="random_pool")
    concepts = [ConceptSet(name, "text", _sentences(rng, 12, words), default_pool="pool")
                for name, words in (("sports", ["team", "won", "match", "goal", "cup"]),
                                    ("money", ["bank", "rates", "price", "stocks"]))]
    inputs = _sentences(rng, 11, WORDS)  # 11: the last batch of 4 is short
    result = run_tcav(adapter, inputs, "positive", concepts, {"pool": pool}, CFG)
    return adapter, inputs, result, (concepts, {"pool": pool})


def _direct(adapter, inputs, result) -> dict[str, torch.Tensor]:
    """S(x) and D(x) of every CAV for every input, kept whole (the non-streaming way)."""
    out = {}
    for w in CFG.weightings():
        parts = [capture_scores(cap, result.directions, result.layers, "cls", w)
                 for cap in adapter.capture_batches(inputs, target=adapter.label_index("positive"),
                                                    grads=True, batch_size=CFG.batch_size)]
        out[w] = (torch.cat([s for s, _ in parts], -1), torch.cat([d for _, d in parts], -1))
    return out


def test_streamed_tables_equal_direct_computation(audit):
    adapter, inputs, result, _ = audit
    direct = _direct(adapter, inputs, result)
    kinds = np.array([s.kind for s in result.specs])
    for (l, w), rows in result.cav_scores.groupby(["layer", "weighting"], sort=False):
        S, D = direct[w][0][result.layers.index(l)], direct[w][1][result.layers.index(l)]
        np.testing.assert_allclose(rows.tcav, tcav_sign(S).numpy(), rtol=1e-6)
        np.testing.assert_allclose(rows.magnitude, tcav_magnitude(S).numpy(), rtol=1e-5)
        np.testing.assert_allclose(rows.derivative, D.mean(-1).numpy(), rtol=1e-5, atol=1e-9)
        # Per input: S(x) of each concept CAV (on request), and its mean/std/share per concept.
        per_cav = result.input_scores[(result.input_scores.layer == l)
                                      & (result.input_scores.weighting == w)]
        concept_S = S[torch.from_numpy(np.flatnonzero(kinds == "concept"))]
        np.testing.assert_allclose(per_cav.score, concept_S.reshape(-1).numpy(), rtol=1e-6)
        ref = per_cav.groupby(["concept", "input_index"], sort=False).score.agg(
            score_mean="mean", score_std="std",
            positive_fraction=lambda v: (v > 0).mean()).reset_index()
        mine = result.input_summary[(result.input_summary.layer == l)
                                    & (result.input_summary.weighting == w)]
        assert len(mine) == len(ref) == 2 * len(inputs) and (mine.num_cavs == CFG.num_cavs).all()
        pd.testing.assert_frame_equal(mine[list(ref.columns)].reset_index(drop=True), ref,
                                      check_dtype=False, rtol=1e-6, atol=1e-9)


def test_per_cav_rows_only_on_request(audit):
    adapter, inputs, result, (concepts, pools) = audit
    assert len(result.input_scores) == 2 * CFG.num_cavs * len(inputs) * 3 * 2
    default = run_tcav(adapter, inputs, "positive", concepts, pools,
                       replace(CFG, per_cav_scores=False))
    assert default.input_scores.empty and list(default.input_scores.columns) == list(
        result.input_scores.columns)
    pd.testing.assert_frame_equal(default.input_summary, result.input_summary)
    pd.testing.assert_frame_equal(default.summary, result.summary)


def test_shards_reduce_to_the_whole_in_any_order():
    torch.manual_seed(0)
    S, D = torch.randn(2, 3, 7, 10), torch.randn(2, 3, 7, 10)
    groups = torch.tensor([[0, 1, 2], [3, 4, 5]])
    whole = ScoreStats.of_batch(S, D, groups, 0, per_cav=True)
    shards = [ScoreStats.of_batch(S[..., a:b], D[..., a:b], groups, a, per_cav=True)
              for a, b in ((6, 10), (0, 3), (3, 6))]
    reduced = ScoreStats.reduce(shards)
    for name in ("tcav", "magnitude", "derivative"):
        torch.testing.assert_close(getattr(reduced, name)(), getattr(whole, name)())
    for got, want in zip(reduced.input_values(), whole.input_values()):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="tile"):
        ScoreStats.reduce(shards[:2])

"""`attnxai bench bridge` on the shipped shapes-vit: TCAV's derivative times the concept's step
predicts the measured CAV intervention (first order), and both are far smaller than what
inserting the planted concept does to the output."""

from __future__ import annotations

import pytest

from attnxai.bench.bridge import bench_bridge, format_bridge


@pytest.mark.slow
def test_first_order_predicts_the_intervention_and_pairs_dwarf_both():
    b = bench_bridge(layers=(0, 3, 5), inputs=16, num_cavs=3)
    assert b.correlation[0] > 0.99 and b.correlation[3] > 0.99
    for r in b.rows:
        assert abs(r["first_order"] - r["measured"]) <= 0.1 * abs(r["measured"]) + 1e-3, r
    # The last block of a [CLS]-read ViT: no gradient, no change, no correlation.
    last = [r for r in b.rows if r["layer"] == 5]
    assert all(r["first_order"] == 0 == r["measured"] for r in last)
    planted = max(abs(r["measured"]) for r in b.rows if r["cavs"] == "striped-objects")
    assert b.pair_effect["striped-objects"] > 1.0 > 100 * planted
    assert "correlation of first-order and measured" in format_bridge(b)

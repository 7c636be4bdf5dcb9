"""Ground truth on the built-in shapes-vit: its planted concept and its control (slow).

The model provably uses the planted texture (its card's intervention figures, re-measured in
tests/test_shapes.py) and was trained with the control colour independent of the class.
An audit at default settings must never flag the control, in any layer and any seed.
"""

from __future__ import annotations

import pytest

import attnxai
from attnxai.io.concepts import load_audit_concepts
from attnxai.io.datasets import demo_dataset
from attnxai.tcav.run import TCAVConfig, run_tcav, target_inputs

SEEDS = range(5)


@pytest.fixture(scope="module")
def audits():
    adapter = attnxai.load_model("builtin:shapes-vit", device="cpu")
    card = adapter.card
    ds = demo_dataset("image")
    inputs, _ = target_inputs(ds.items, ds.labels, adapter, card["planted_class"])
    concepts, pools = load_audit_concepts([card["planted_concept"], card["control_concept"]],
                                          None, adapter.modality)
    summaries = [run_tcav(adapter, inputs, card["planted_class"], concepts, pools,
                          TCAVConfig(seed=seed)).summary for seed in SEEDS]
    return card, summaries


@pytest.mark.slow
def test_control_concept_is_never_significant(audits):
    card, summaries = audits
    for s in summaries:
        control = s[s.concept == card["control_concept"]]
        assert len(control) == 2 * 6  # every layer, both weightings
        assert not control.significant.any(), control[["layer", "weighting", "p_value", "p_adjusted"]]

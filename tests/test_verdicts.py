"""The one-sentence verdict that combines a concept's TCAV rows with its causal effects."""

from __future__ import annotations

import pandas as pd
import pytest

from attnxai.audit.verdicts import combined_verdict


def _tcav(significant: bool) -> pd.DataFrame:
    return pd.DataFrame({"significant": [significant, False], "direction": ["positive", "none"]})


def _effect(measure: str, significant: bool, mean: float = 0.2, p: float = 0.01) -> pd.DataFrame:
    return pd.DataFrame({"measure": [measure], "significant": [significant], "mean": [mean],
                         "p_adjusted": [p if significant else 0.4]})


@pytest.mark.parametrize("tcav, measure, effect, expected", [
    (True, "output_prob", True, "Both agree that the class relies on stripes"),
    (False, "output_prob", True, "The causal test finds reliance on stripes that TCAV misses"),
    (True, "output_prob", False, "treat the TCAV flag with care"),
    # An unpaired concept's intervention has little measured power: no contradiction claimed.
    (True, "cav_intervention", False, "does not contradict TCAV"),
    (False, "cav_intervention", False, "neither TCAV nor CAV intervention is significant"),
])
def test_combined_verdict_says_what_each_test_found(tcav, measure, effect, expected):
    text = combined_verdict("stripes", _tcav(tcav), _effect(measure, effect))
    assert expected in text
    if effect:
        assert "+0.200" in text and "0.01" in text
    if measure == "cav_intervention" and tcav:
        assert "care" not in text


def test_combined_verdict_without_effects():
    assert combined_verdict("stripes", _tcav(True), None) == (
        "TCAV finds stripes significant (positive); no causal effect was measured.")

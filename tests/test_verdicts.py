"""The one-sentence verdict that combines a concept's TCAV rows with its causal effects, each
tested against the minimum relevant effect δ (relies / negligible / inconclusive)."""

from __future__ import annotations

import pandas as pd
import pytest

from attnxai.audit.verdicts import combined_verdict, effect_verdict, with_relevance


def _tcav(significant: bool, direction: str = "positive") -> pd.DataFrame:
    return pd.DataFrame({"significant": [significant, False], "direction": [direction, "none"]})


def _effect(measure: str, verdict: str, mean: float = 0.2, p: float = 0.01,
            n_needed: float = float("nan")) -> pd.DataFrame:
    return pd.DataFrame({"measure": [measure], "layer": [-1 if measure == "output_prob" else 2],
                         "significant": [verdict == "relies"], "verdict": [verdict],
                         "mean": [mean], "ci_low": [mean - 0.05], "ci_high": [mean + 0.05],
                         "p_adjusted": [p if verdict == "relies" else 0.4],
                         "p_negligible": [0.001 if verdict == "negligible" else 0.6],
                         "min_effect": [0.02 if measure == "output_prob" else 0.1],
                         "n_needed": [n_needed], "n_pairs": [50], "share": [float("nan")]})


@pytest.mark.parametrize("tcav, measure, verdict, mean, expected", [
    (True, "output_prob", "relies", 0.2, "raises the class, and both tests agree"),
    (False, "output_prob", "relies", 0.2, "raises the class, which TCAV misses"),
    # The control colour of issue 19: TCAV significant, the output effect shown negligible.
    (True, "output_prob", "negligible", -0.003, "does not rely on stripes enough to matter"),
    (False, "output_prob", "negligible", 0.0008, "The class does not rely on stripes"),
    (True, "output_prob", "inconclusive", 0.03, "treat the TCAV flag with care"),
    # An unpaired concept's intervention has little measured power: no contradiction claimed.
    (True, "cav_intervention", "inconclusive", 0.05, "does not contradict TCAV"),
    (False, "cav_intervention", "inconclusive", 0.05, "No evidence that the class relies"),
    # A negligible push along the CAVs is not evidence that the concept itself does not matter.
    (True, "cav_intervention", "negligible", 0.004, "does not show the class ignores stripes"),
])
def test_combined_verdict_says_what_each_test_found(tcav, measure, verdict, mean, expected):
    text = combined_verdict("stripes", _tcav(tcav), _effect(measure, verdict, mean))
    assert expected in text
    assert f"{mean:+.3f}" in text
    if verdict == "relies":
        assert "beyond δ = " in text and "0.01" in text
    if verdict == "negligible":
        assert "within ±" in text and "relies on stripes:" not in text
        assert ("does not rely" in text) == (measure == "output_prob")
    if measure == "cav_intervention" and tcav:
        assert "care" not in text


def test_the_direction_leads_the_sentence():
    """A concept TCAV finds significant negative, whose intervention lowers the logit by 0.80,
    lowers the class: it is not read as the class relying on it in the usual sense."""
    text = combined_verdict("cooking-food", _tcav(True, "negative"),
                            _effect("cav_intervention", "relies", -0.80))
    assert text.startswith("The concept cooking-food lowers the class")
    assert "-0.800 on the logit at layer 2" in text
    mixed = combined_verdict("cooking-food", _tcav(True, "positive"),
                             _effect("output_prob", "relies", -0.3))
    assert "lowers the class" in mixed and "points the other way" in mixed


def test_an_inconclusive_effect_says_how_many_pairs_would_settle_it():
    text = combined_verdict("stripes", _tcav(False), _effect("output_prob", "inconclusive",
                                                            0.01, n_needed=240))
    assert "inconclusive against δ = 0.02" in text and "about 240 pairs would settle it" in text


def test_rows_stored_before_the_minimum_effect_read_as_tests_against_zero():
    old = _effect("output_prob", "relies").drop(columns=["verdict", "min_effect",
                                                         "p_negligible", "n_needed"])
    assert "non-zero (adjusted p 0.01)" in combined_verdict("stripes", _tcav(True), old)
    old["significant"] = False
    assert "not significant" in effect_verdict(old.assign(layer=-1))


def test_layer_rows_name_the_layers_beyond_delta_and_the_negligible_ones():
    rows = pd.concat([_effect("patch_restore", v).assign(layer=layer, share=0.6)
                      for layer, v in ((0, "negligible"), (1, "relies"), (2, "inconclusive"))])
    assert effect_verdict(rows) == "patching restores: beyond δ = 0.1 at layer 1 (share 0.60)"
    none = rows.assign(verdict=["negligible", "negligible", "inconclusive"], significant=False)
    assert effect_verdict(none).endswith("negligible at layers 0, 1")


def test_combined_verdict_without_effects():
    assert combined_verdict("stripes", _tcav(True), None) == (
        "TCAV finds stripes significant (positive); no causal effect was measured.")


@pytest.mark.parametrize("significant, direction, measure, verdict, mean, relevance, relies", [
    (True, "positive", "output_prob", "relies", 0.2, "relies", True),
    # TCAV significant, the effect shown to matter the other way round: no ★.
    (True, "negative", "output_prob", "relies", 0.2, "relies", False),
    (False, "positive", "output_prob", "relies", 0.2, "relies", False),
    # The control colour of issue 19: TCAV significant, the effect negligible: ☆, not ★.
    (True, "positive", "output_prob", "negligible", -0.003, "negligible", False),
    (True, "positive", "output_prob", "inconclusive", 0.03, "inconclusive", False),
    (True, "negative", "cav_intervention", "relies", -0.4, "relies", True),
    # A negligible push along the CAVs does not show the concept is negligible.
    (True, "positive", "cav_intervention", "negligible", 0.004, "inconclusive", False),
])
def test_a_star_marks_a_significant_layer_whose_concept_relies_the_same_way(
        significant, direction, measure, verdict, mean, relevance, relies):
    summary = pd.DataFrame({"dataset": "d", "target": "t", "concept": ["c", "c", "other"],
                            "layer": [0, 1, 0], "significant": [significant, False, True],
                            "direction": [direction, "none", "positive"]})
    effects = _effect(measure, verdict, mean).assign(
        dataset="pairs" if measure == "output_prob" else "d", target="t", concept="c")
    out = with_relevance(summary, effects)
    assert out.relevance.tolist() == [relevance, relevance, "not measured"]
    assert out.relies.tolist() == [relies, False, False]
    # Another target's effects say nothing about this one.
    assert not with_relevance(summary, effects.assign(target="u")).relies.any()

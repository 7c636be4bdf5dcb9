"""The tests of concept scores against random CAVs, on simulated nulls with known structure."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from attnxai.stats import NULL_GROUP, adjust, p_value

# A random-effects world: a CAV's statistic = effect of its positive set + effect of its
# negatives and split. The null CAVs come in groups sharing positives, as plan_cavs draws them.
SD_POS, SD_REST, M, R = 1.0, 0.7, 200, 10


def _null(rng: np.random.Generator) -> np.ndarray:
    pos = np.repeat(rng.normal(0, SD_POS, M // NULL_GROUP), NULL_GROUP)
    return pos + rng.normal(0, SD_REST, M)


def _concept(rng: np.random.Generator, shift: float = 0.0, shared: str = "positives") -> np.ndarray:
    if shared == "both":  # matched pairs: one draw of both sides, repetitions barely differ
        return shift + rng.normal(0, SD_POS, 1) + rng.normal(0, SD_REST, 1) + rng.normal(0, 1e-3, R)
    return shift + rng.normal(0, SD_POS, 1) + rng.normal(0, SD_REST, R)


@pytest.mark.parametrize("shared", ["positives", "both"])
def test_grouped_test_is_calibrated_and_has_power(shared):
    rng = np.random.default_rng(0)
    null_p = np.array([p_value(_concept(rng, shared=shared), _null(rng), "grouped", 0.0, shared)
                       for _ in range(3000)])
    # Under the null the p-values are uniform: 5% +- 3 binomial standard errors below 0.05.
    assert abs((null_p < 0.05).mean() - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 3000)
    assert sps.kstest(null_p, "uniform").pvalue > 0.001
    shifted = np.array([p_value(_concept(rng, 4.0, shared), _null(rng), "grouped", 0.0, shared)
                        for _ in range(300)])
    assert (shifted < 0.05).mean() > 0.8


def test_grouped_variance_by_hand():
    # Two groups of NULL_GROUP values with known means and spreads, around center 0.5.
    groups = np.array([[0.4, 0.6, 0.5, 0.5], [0.8, 1.0, 0.9, 0.9]] * 3)  # 6 groups
    null = groups.reshape(-1)
    within = groups.var(axis=1, ddof=1).mean()
    positives = np.mean((groups.mean(axis=1) - 0.5) ** 2) - within / NULL_GROUP
    concept = np.array([0.9, 1.1, 1.0])
    for shared, var in (("positives", positives + within / 3), ("both", positives + within)):
        z = (concept.mean() - 0.5) / np.sqrt(var)
        expected = 2 * sps.t.sf(abs(z), df=len(groups) - 1)
        assert p_value(concept, null, "grouped", 0.5, shared) == pytest.approx(expected, rel=1e-12)


def test_empirical_is_conservative_and_welch_is_not():
    rng = np.random.default_rng(1)
    p = {t: np.array([p_value(c, n, t, 0.0) for c, n in
                      ((_concept(rng), _null(rng)) for _ in range(1000))])
         for t in ("empirical", "welch")}
    assert (p["empirical"] < 0.05).mean() < 0.05
    assert (p["welch"] < 0.05).mean() > 0.2  # R correlated CAVs taken as independent samples


def test_grouped_needs_enough_groups():
    with pytest.raises(ValueError, match="at least"):
        p_value(np.zeros(3), np.ones(16), "grouped", 0.0)


def test_corrections_match_their_definitions():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert np.allclose(adjust(p, "bonferroni"), [0.04, 0.16, 0.12, 1.0])
    # BH by hand: sorted p * m / rank, then a running minimum from the top.
    assert np.allclose(adjust(p, "bh"), [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5])
    assert np.array_equal(adjust(p, "none"), p)

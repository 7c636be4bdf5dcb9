"""The tests of concept scores against random CAVs, on simulated nulls with known structure."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from attnxai.stats import (NULL_GROUP, adjust, min_effect_p_values, n_to_settle, p_value,
                           relevance_verdicts)

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


def test_grouped_test_with_an_unknown_center_is_calibrated_where_an_assumed_one_is_not():
    # CAV interventions: the null CAVs' values sit around an unknown offset (a finite step
    # need not act oppositely along v and -v), and there are few of them (40: 10 groups).
    rng = np.random.default_rng(3)
    offset, m = -1.5, 40

    def null() -> np.ndarray:
        return offset + _null(rng)[:m]

    estimated = np.array([p_value(offset + _concept(rng), null(), "grouped", None)
                          for _ in range(3000)])
    assert abs((estimated < 0.05).mean() - 0.05) < 3 * np.sqrt(0.05 * 0.95 / 3000)
    assert sps.kstest(estimated, "uniform").pvalue > 0.001
    assumed = np.array([p_value(offset + _concept(rng), null(), "grouped", 0.0)
                        for _ in range(500)])
    assert sps.kstest(assumed, "uniform").pvalue < 1e-6  # centre 0 assumed: not a p-value
    shifted = np.array([p_value(offset + _concept(rng, 4.0), null(), "grouped", None)
                        for _ in range(300)])
    assert (shifted < 0.05).mean() > 0.6
    with pytest.raises(ValueError, match="center"):
        p_value(np.zeros(3), np.ones(40), "welch", None)


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


def _bh_rejects(p: np.ndarray, q: float) -> np.ndarray:
    """Benjamini-Hochberg's step-up rule by its definition: reject the k smallest p-values,
    k the largest rank with p_(k) <= k q / m."""
    order = np.argsort(p)
    m = len(p)
    ok = [k for k in range(1, m + 1) if p[order[k - 1]] <= k * q / m]
    out = np.zeros(m, dtype=bool)
    if ok:
        out[order[:max(ok)]] = True
    return out


def _two_level_rejects(p: np.ndarray, families: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini & Bogomolov (2014) by its definition: Simes p per family, BH across the
    families at alpha, then BH within each of the R selected of F families at alpha R / F."""
    labels = np.unique(families)
    simes = np.array([min(len(q) * np.sort(q)[k] / (k + 1) for k in range(len(q)))
                      for q in (p[families == f] for f in labels)])
    chosen = labels[_bh_rejects(simes, alpha)]
    out = np.zeros(len(p), dtype=bool)
    for f in chosen:
        members = families == f
        out[members] = _bh_rejects(p[members], alpha * len(chosen) / len(labels))
    return out


def test_hierarchical_correction_rejects_what_the_two_level_procedure_rejects():
    # The adjusted p is the smallest level at which the procedure rejects the test: below it
    # at every level above, and not below it at any level under it.
    rng = np.random.default_rng(0)
    for trial in range(300):
        n_fam = int(rng.integers(1, 12))
        sizes = rng.integers(1, 13, n_fam)
        families = np.repeat(np.arange(n_fam) * 7 + 3, sizes)  # labels need not be 0..F-1
        p = rng.uniform(0, 1, len(families)) ** rng.choice([1.0, 3.0, 8.0])  # some signal
        adjusted = adjust(p, "hierarchical", families)
        assert np.all((adjusted >= p - 1e-15) & (adjusted <= 1.0))
        edges = np.unique(adjusted[adjusted < 1])
        for alpha in [0.01, 0.05, 0.2, *(edges * (1 + 1e-9)), *(edges * (1 - 1e-9))]:
            assert np.array_equal(adjusted < alpha, _two_level_rejects(p, families, alpha)), \
                (trial, alpha)
    with pytest.raises(ValueError, match="family"):
        adjust(p, "hierarchical")


def test_hierarchical_adjusted_p_stays_informative_when_no_family_is_selected():
    # Two families, neither selected at 0.05: the adjusted p says how far each test is from
    # the bar instead of 1 everywhere; here one family's best test is rejected from 0.06 on.
    p = np.array([0.015, 0.4, 0.03, 0.9])
    families = np.array([0, 0, 1, 1])
    adjusted = adjust(p, "hierarchical", families)
    assert not _two_level_rejects(p, families, 0.05).any() and (adjusted >= 0.05).all()
    assert adjusted.min() < 1
    assert _two_level_rejects(p, families, adjusted.min() * (1 + 1e-9)).any()


def test_hierarchical_correction_keeps_one_concept_from_lowering_anothers_bar():
    # The shapes-vit case (docs/method.md): a planted concept with several small p-values and
    # a control whose best p-value would pass one BH over all tests only thanks to them.
    planted = np.array([1.5e-5, 1.3e-4, 5e-4, 6e-3, 0.010, 0.011, 0.015, 0.04, 0.2, 0.3, 0.5, 0.9])
    control = np.array([0.0135, 0.05, 0.28, 0.45, 0.56, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0])
    p, families = np.concatenate([planted, control]), np.repeat([0, 1], 12)
    assert (adjust(p, "bh")[12:] < 0.05).any()  # one BH: the control is flagged
    two_level = adjust(p, "hierarchical", families) < 0.05
    assert two_level[:12].sum() >= 3 and not two_level[12:].any()
    # Alone, the control gets the same answer as beside the planted concept.
    alone = adjust(control, "hierarchical", np.zeros(12))
    assert not (alone < 0.05).any()


# -- minimum relevant effect (docs/method.md §8) -------------------------------------------------
def _t_two_sided(x: np.ndarray) -> np.ndarray:
    return sps.ttest_1samp(x, 0.0, axis=0).pvalue


def test_min_effect_tests_with_a_t_test_equal_statsmodels_tost_and_one_sided_tests():
    from statsmodels.stats.weightstats import ttost_paired

    rng = np.random.default_rng(3)
    for mean, delta in ((0.001, 0.02), (0.05, 0.02), (-0.05, 0.02), (0.018, 0.02), (0.3, 0.1)):
        d = rng.normal(mean, 0.03, size=40)
        relevant, negligible = min_effect_p_values(d[:, None], delta, _t_two_sided)
        # Equivalence: TOST of the paired differences within (-δ, δ).
        tost = ttost_paired(d, np.zeros_like(d), -delta, delta)[0]
        assert negligible[0] == pytest.approx(tost, rel=1e-9)
        # Relevance: the one-sided minimum-effect tests beyond ±δ, the smaller p doubled.
        up = sps.ttest_1samp(d, delta, alternative="greater").pvalue
        down = sps.ttest_1samp(d, -delta, alternative="less").pvalue
        assert relevant[0] == pytest.approx(min(1.0, 2 * min(up, down)), rel=1e-9)


def test_min_effect_sign_flip_by_enumeration():
    """The sign-flip version against every one of the 2^n sign patterns of d ∓ δ, for an
    effect beyond δ (relevance) and one within it (equivalence): the tails that decide."""
    import itertools

    from attnxai.stats import paired_p_values

    delta = 0.02
    signs = np.array(list(itertools.product([1, -1], repeat=10)))

    def tail(shifted: np.ndarray, greater: bool) -> float:
        means, obs = (signs * shifted).mean(1), shifted.mean()
        return float(np.mean(means >= obs - 1e-12) if greater else np.mean(means <= obs + 1e-12))

    def tests(d: np.ndarray) -> tuple[float, float]:
        rel, neg = min_effect_p_values(d[:, None], delta,
                                       lambda x: paired_p_values(x, "sign_flip", 0))
        return rel[0], neg[0]

    beyond = np.array([0.09, 0.05, 0.12, -0.01, 0.07, 0.04, 0.10, 0.06, 0.03, 0.08])
    within = np.array([0.004, -0.006, 0.011, -0.002, 0.007, 0.001, -0.009, 0.003, 0.005, -0.001])
    assert tests(beyond)[0] == pytest.approx(2 * tail(beyond - delta, True))
    assert tests(within)[1] == pytest.approx(max(tail(within + delta, True),
                                                 tail(within - delta, False)))
    # The far tails come from 1 - p/2, which leaves out the mass of ties at the observed mean:
    # never below 1/2, so never what decides at α < 1/2.
    assert tests(beyond)[1] >= 0.5 and tests(within)[0] == 1.0


def test_min_effect_zero_is_the_ordinary_test_and_never_negligible():
    rng = np.random.default_rng(4)
    d = rng.normal(0.01, 0.05, size=(30, 6))
    relevant, negligible = min_effect_p_values(d, 0.0, _t_two_sided)
    np.testing.assert_allclose(relevant, _t_two_sided(d), rtol=1e-12)
    assert (negligible == 1).all()


def test_min_effect_verdicts_are_calibrated_at_the_margin():
    """At a true effect of exactly δ, "relies" is called at most α/2 of the time (one side of
    the margin) and "negligible" at most α: both nulls are composite, δ is their boundary."""
    rng = np.random.default_rng(5)
    delta, alpha = 0.02, 0.05
    d = rng.normal(delta, 0.05, size=(40, 4000))
    relevant, negligible = min_effect_p_values(d, delta, _t_two_sided)
    verdicts = relevance_verdicts(relevant, negligible, alpha)
    assert (verdicts == "relies").mean() <= alpha / 2 + 0.01
    assert (verdicts == "negligible").mean() <= alpha + 0.01
    # And with power far from it: a large effect relies, no effect is negligible.
    big = relevance_verdicts(*min_effect_p_values(rng.normal(0.1, 0.05, (40, 500)), delta,
                                                  _t_two_sided), alpha)
    zero = relevance_verdicts(*min_effect_p_values(rng.normal(0.0, 0.02, (40, 500)), delta,
                                                   _t_two_sided), alpha)
    assert (big == "relies").mean() > 0.99 and (zero == "negligible").mean() > 0.9


def test_n_to_settle_puts_the_margin_where_the_interval_would_clear_delta():
    n = n_to_settle(np.array([0.03, 0.01, 0.02]), np.array([0.05, 0.05, 0.05]), 0.02, 0.05)
    z = sps.norm.ppf(0.975)
    assert n[0] == np.ceil((z * 0.05 / 0.01) ** 2) and n[1] == n[0]
    assert np.isnan(n[2])  # on the margin: no sample size settles it

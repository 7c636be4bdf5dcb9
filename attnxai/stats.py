"""Tests of concept TCAV scores against random concepts, and multiple-testing corrections.

Four tests are offered (see the README's "Statistics" section for the calibration
measurement behind the default):

- ``grouped`` (default): a random-effects test against many random-vs-random CAVs, which come
  in groups of ``NULL_GROUP`` sharing one random positive set. Between- and within-group spread
  split the null variance into the part due to the positive set and the part due to the
  negatives and the split, so the null variance of a concept's *mean* over R CAVs is estimated
  for the concept's own design: R CAVs sharing their positives (random or relative negatives),
  or sharing both sides (matched pairs, whose repetitions only resample the pairs). The mean
  is then compared with that variance by a t distribution with one degree of freedom per group.
- ``empirical``: the concept's mean score is ranked among the single null CAVs. Random CAVs are
  symmetric around the center (swapping the two random sets negates the CAV), so the two-sided
  p-value is ``(1 + #{j : |t_j - c| >= |mean - c|}) / (M + 1)``. A mean over R CAVs varies
  less than one CAV, so this test is calibrated but very conservative.
- ``welch``: the classic two-sided Welch t-test of the R concept scores vs the random scores.
  It treats the R correlated concept CAVs as independent samples and is not calibrated.
- ``one_sample``: the TCAV reference code's t-test of the concept scores against the center.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

TESTS = ("empirical", "grouped", "welch", "one_sample")
#: Tests whose null is the many random-vs-random CAVs (num_null of them), not num_random.
NULL_TESTS = ("empirical", "grouped")
#: Null CAVs per group sharing one random positive set (tests "empirical" and "grouped").
NULL_GROUP = 4
#: Per-CAV statistics a test can compare, with the value random CAVs are symmetric around.
STATISTICS = {"derivative": 0.0, "tcav": 0.5, "magnitude": 0.5}
CORRECTIONS = ("hierarchical", "bh", "bonferroni", "none")


def p_value(concept: np.ndarray, random: np.ndarray, test: str = "grouped",
            center: float | None = 0.5, shared: str = "positives") -> float:
    """Two-sided p-value that the concept's scores differ from the random concepts'.

    ``center`` is the value random CAVs are symmetric around: 0.5 for TCAV scores, 0 for
    mean directional derivatives. ``None`` (grouped test only): no such value is known, and
    the null's own mean is used, with its uncertainty (CAV interventions: a finite step along
    v and along -v need not change the logit by opposite amounts). For ``grouped``, ``random``
    holds the null CAVs in rep order (consecutive groups of NULL_GROUP share positives) and
    ``shared`` says what the concept's CAVs share: ``positives`` or ``both`` (matched pairs).
    """
    concept = np.asarray(concept, dtype=float)
    random = np.asarray(random, dtype=float)
    if test == "grouped":
        return _grouped_p(concept, random, center, shared)
    if center is None:
        raise ValueError(f"test {test!r} needs the null's center")
    if test == "empirical":
        observed = abs(concept.mean() - center)
        # A tiny tolerance counts ties (frequent with saturated scores) against the concept.
        extreme = np.sum(np.abs(random - center) >= observed - 1e-12)
        return float((1 + extreme) / (len(random) + 1))
    if test == "welch":
        if np.ptp(concept) == 0 and np.ptp(random) == 0:
            return 1.0 if concept[0] == random[0] else 0.0
        return float(stats.ttest_ind(concept, random, equal_var=False).pvalue)
    if test == "one_sample":
        if np.ptp(concept) == 0:
            return 1.0 if concept[0] == center else 0.0
        return float(stats.ttest_1samp(concept, center).pvalue)
    raise ValueError(f"Unknown test {test!r}; choose one of {', '.join(TESTS)}.")


@dataclass
class GroupedNull:
    """The grouped test's null for one concept's mean over its CAVs (see :func:`p_value`)."""

    center: float
    variance: float  # of the concept's mean around the true center
    center_variance: float  # of the estimated center (0 when the center is known)
    groups: int


def grouped_null(random: np.ndarray, num_cavs: int, center: float | None = None,
                 shared: str = "positives") -> GroupedNull:
    """The grouped test's null for a concept's mean over ``num_cavs`` CAVs from the null CAVs'
    values ``random`` (in rep order, consecutive groups of NULL_GROUP sharing positives)."""
    groups = random[: len(random) // NULL_GROUP * NULL_GROUP].reshape(-1, NULL_GROUP)
    if len(groups) < 5:
        raise ValueError(f"The grouped test needs at least {5 * NULL_GROUP} null CAVs.")
    within = groups.var(axis=1, ddof=1).mean()  # negatives, split and solver: per CAV
    means = groups.mean(axis=1)
    if center is None:  # estimated: the spread of the group means, and the center's own error
        spread, center = float(means.var(ddof=1)), float(means.mean())
        center_variance = spread / len(groups)
    else:  # the mean square of the group means around the known center
        spread, center_variance = float(np.mean((means - center) ** 2)), 0.0
    # The group means vary by positives + within / group size.
    positives = max(spread - within / NULL_GROUP, 0.0)
    variance = positives + within if shared == "both" else positives + within / num_cavs
    return GroupedNull(center, float(variance), center_variance, len(groups))


def _grouped_p(concept: np.ndarray, random: np.ndarray, center: float | None,
               shared: str) -> float:
    null = grouped_null(random, len(concept), center, shared)
    variance = null.variance + null.center_variance
    if variance <= 0:
        return 1.0 if concept.mean() == null.center else 0.0
    z = (concept.mean() - null.center) / np.sqrt(variance)
    # Student t with one degree of freedom per group: the variance is estimated.
    return float(2 * stats.t.sf(abs(z), df=null.groups - 1))


def adjust(p: np.ndarray, method: str = "bh", families: np.ndarray | None = None) -> np.ndarray:
    """Multiple-testing adjusted p-values: Benjamini-Hochberg, Bonferroni, none, or
    ``hierarchical`` (:func:`hierarchical_adjust`, which needs ``families``)."""
    p = np.asarray(p, dtype=float)
    if p.size == 0 or method == "none":
        return p.copy()
    if method == "bh":
        return stats.false_discovery_control(p, method="bh")
    if method == "bonferroni":
        return np.minimum(1.0, p * p.size)
    if method == "hierarchical":
        if families is None:
            raise ValueError("the hierarchical correction needs each test's family")
        return hierarchical_adjust(p, families)
    raise ValueError(f"Unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}.")


#: The columns that name a family of tests for the hierarchical correction: one concept's layers
#: and weightings (or effect measures) for one dataset and target.
FAMILY_COLUMNS = ("dataset", "target", "concept")


def adjust_frame(frame: pd.DataFrame, correction: str) -> np.ndarray:
    """Adjusted p-values of the tests in ``frame`` (a ``p_value`` column), all corrected
    together; its families are the :data:`FAMILY_COLUMNS` it has."""
    by = [c for c in FAMILY_COLUMNS if c in frame.columns]
    families = (frame.groupby(by, sort=False, dropna=False).ngroup().to_numpy() if by
                else np.zeros(len(frame), dtype=int))
    return adjust(frame["p_value"].to_numpy(dtype=float), correction, families)


def hierarchical_adjust(p: np.ndarray, families: np.ndarray) -> np.ndarray:
    """Two-level correction of Benjamini & Bogomolov (2014) for tests in families (here a
    concept's layers and weightings for one dataset and target; docs/method.md §3.6).

    A concept's verdict is "used at some layer", a claim about its whole family. At level α,
    level 1 tests each family by its Simes p-value (the smallest Benjamini-Hochberg adjusted p
    within it) and selects families by Benjamini-Hochberg across them: R(α) of F selected.
    Level 2 applies Benjamini-Hochberg within each selected family at α R(α) / F. So one
    concept's strong findings cannot lower another's bar, as they do under one BH over all
    tests.

    The adjusted p of a test is the smallest α at which the procedure rejects it. With q_f its
    family's level-1 adjusted p, q_w its within-family BH p and u_1 <= ... <= u_F the families'
    q_f, that is ``min_j max(u_j, q_f, q_w F / j)`` (capped at 1): at α = u_j at least j
    families are selected, and rejection only grows with α. So it is below α exactly for the
    tests the procedure rejects at α, whatever α, and a test close to the bar shows how close.
    """
    p = np.asarray(p, dtype=float)
    labels, family = np.unique(np.asarray(families), return_inverse=True)
    within = np.empty_like(p)
    for f in range(len(labels)):
        members = family == f
        within[members] = stats.false_discovery_control(p[members], method="bh")
    simes = np.array([within[family == f].min() for f in range(len(labels))])
    selected_p = stats.false_discovery_control(simes, method="bh")
    return np.minimum(1.0, _smallest_levels(np.sort(selected_p), selected_p[family],
                                            within * len(labels)))


def _smallest_levels(u: np.ndarray, q_f: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``min_j max(u_j, q_f, c / j)`` per test (j = 1..F, ``u`` sorted) in O(log F) each.

    For j below the test's family rank r (the first j with u_j >= q_f) the term is at least
    its value at r, so only j >= r counts, where it is ``max(u_j, c / j)``: c / j falls and u_j
    rises, so the minimum sits where j u_j (rising too) first reaches c.
    """
    F = len(u)
    j = np.arange(1, F + 1)
    rank = np.searchsorted(u, q_f, side="left") + 1
    cross = np.maximum(rank, np.searchsorted(u * j, c, side="left") + 1)  # F + 1: never
    inside = cross <= F
    best = np.where(inside, u[np.minimum(cross, F) - 1], c / F)
    before = cross - 1  # the last j where c / j was still the larger term
    return np.where(before >= rank, np.minimum(best, c / np.maximum(before, 1)), best)


# -- paired differences (causal effects, docs/method.md §6) -------------------------------------
#: Tests of paired differences against zero. ``sign_flip`` (default) is a permutation test of
#: the mean: under the null the sign of each pair's difference is a fair coin, so the mean is
#: compared with its distribution over random signs (exact for up to SIGN_FLIP_EXACT pairs).
#: ``wilcoxon`` is the signed-rank test, of the median rather than the mean.
PAIRED_TESTS = ("sign_flip", "wilcoxon")
SIGN_FLIP_EXACT = 16
SIGN_FLIP_RESAMPLES = 9999
SIGN_FLIP_BATCH_VALUES = 20_000_000


def paired_p_values(deltas: np.ndarray, test: str = "sign_flip", seed: int = 0) -> np.ndarray:
    """Two-sided p-values that the paired differences ``deltas`` [n, ...] have mean (or, for
    Wilcoxon, median) zero; one p-value per column. Columns with every difference zero get 1."""
    d = np.asarray(deltas, dtype=float)
    flat = d.reshape(d.shape[0], -1)
    p = np.ones(flat.shape[1])
    live = np.any(flat != 0, axis=0)
    if flat.shape[0] >= 1 and live.any():
        x = flat[:, live]
        if test == "sign_flip":
            exact = x.shape[0] <= SIGN_FLIP_EXACT
            # Resamples in batches of at most SIGN_FLIP_BATCH_VALUES values: many columns at
            # once (a calibration run's thousands of trials) would otherwise take gigabytes.
            batch = max(1, SIGN_FLIP_BATCH_VALUES // x.size)
            res = stats.permutation_test(
                (x,), lambda v, axis: np.mean(v, axis=axis), permutation_type="samples",
                vectorized=True, n_resamples=np.inf if exact else SIGN_FLIP_RESAMPLES,
                batch=batch, alternative="two-sided", axis=0, rng=np.random.default_rng(seed))
            p[live] = np.minimum(1.0, res.pvalue)
        elif test == "wilcoxon":
            p[live] = stats.wilcoxon(x, axis=0, zero_method="wilcox").pvalue
        else:
            raise ValueError(f"Unknown paired test {test!r}; choose one of {', '.join(PAIRED_TESTS)}.")
    return p.reshape(d.shape[1:])


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 and its two-sided Student-t interval at ``level`` (NaN for n < 2)."""
    v = np.asarray(values, dtype=float)
    n = v.shape[0]
    mean = v.mean(axis=0)
    if n < 2:
        nan = np.full_like(mean, np.nan)
        return mean, nan, nan
    half = stats.t.ppf(0.5 + level / 2, df=n - 1) * v.std(axis=0, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


# -- minimum relevant effect (docs/method.md §8) -------------------------------------------------
#: The three verdicts of a test against a minimum relevant effect δ.
RELIES, NEGLIGIBLE, INCONCLUSIVE = "relies", "negligible", "inconclusive"


def one_sided(p_two: np.ndarray, observed: np.ndarray, greater: bool) -> np.ndarray:
    """One-sided p-values from a symmetric test's two-sided ones: ``p/2`` where the observed
    statistic (its sign: the estimate minus the null's centre) lies on the side tested, else
    ``1 - p/2``. For the sign-flip, Wilcoxon and t-based tests, whose two-sided p is twice the
    smaller tail, the near side is exact; the far side leaves out the probability of ties at the
    observed value, and is at least 1/2, so it never decides a test at α < 1/2."""
    half = np.asarray(p_two, dtype=float) / 2
    on_side = np.asarray(observed) > 0 if greater else np.asarray(observed) < 0
    return np.where(on_side, half, 1 - half)


def min_effect_p_values(values: np.ndarray, delta: np.ndarray | float,
                        two_sided: Callable[[np.ndarray], np.ndarray], center: float = 0.0
                        ) -> tuple[np.ndarray, np.ndarray]:
    """p-values of the two questions an auditor asks of an effect E, given a minimum relevant
    effect δ >= 0 (per column of ``values`` [n, ...], or one for all):

    - **relevant**: H0 ``|E| <= δ`` against ``|E| > δ``: the one-sided tests of ``E <= δ`` and
      of ``E >= -δ``, the smaller p doubled (a two-sided minimum-effect test; for δ = 0 it is
      the ordinary two-sided test of E = 0);
    - **negligible**: H0 ``|E| >= δ`` against ``|E| < δ``: the two one-sided tests of
      equivalence (TOST, Schuirmann 1987), the larger p (1 when δ = 0: nothing is shown
      negligible without a margin).

    ``two_sided(shifted)`` is any symmetric test's two-sided p-values of "mean = ``center``" for
    the values shifted by ∓δ (so the test itself is used at the margins), per column.
    """
    v = np.asarray(values, dtype=float)
    delta = np.broadcast_to(np.asarray(delta, dtype=float), v.shape[1:])
    below, above = v - delta, v + delta  # centred on the margins +δ and -δ
    p_below, p_above = two_sided(below), two_sided(above)
    m_below, m_above = below.mean(axis=0) - center, above.mean(axis=0) - center
    beyond = np.minimum(one_sided(p_below, m_below, greater=True),     # E > δ
                        one_sided(p_above, m_above, greater=False))    # E < -δ
    relevant = np.minimum(1.0, 2 * beyond)
    negligible = np.maximum(one_sided(p_above, m_above, greater=True),  # E > -δ
                            one_sided(p_below, m_below, greater=False))  # E < δ
    negligible = np.where(delta > 0, negligible, 1.0)
    return relevant, negligible


def relevance_verdicts(p_relevant: np.ndarray, p_negligible: np.ndarray, alpha: float
                       ) -> np.ndarray:
    """``relies`` where the (adjusted) relevance p is below ``alpha``, ``negligible`` where the
    (adjusted) equivalence p is, else ``inconclusive``. Both cannot hold at once for α < 1/2:
    the estimate would have to lie beyond δ and within it."""
    p_rel = np.nan_to_num(np.asarray(p_relevant, dtype=float), nan=1.0)
    p_neg = np.nan_to_num(np.asarray(p_negligible, dtype=float), nan=1.0)
    return np.where(p_rel < alpha, RELIES, np.where(p_neg < alpha, NEGLIGIBLE, INCONCLUSIVE))


def n_to_settle(mean: np.ndarray, sd: np.ndarray, delta: np.ndarray | float, alpha: float
                ) -> np.ndarray:
    """About how many pairs would settle an inconclusive effect: the n at which a mean as
    large as this one, with this spread, would lie a normal-approximation margin away from δ
    (beyond it: relevant; within it: negligible). NaN where the mean sits on δ or has no
    spread. A planning figure, not a promise: the next sample's mean will differ."""
    mean, sd = np.asarray(mean, dtype=float), np.asarray(sd, dtype=float)
    gap = np.abs(np.abs(mean) - np.asarray(delta, dtype=float))
    z = stats.norm.ppf(1 - alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.ceil((z * sd / gap) ** 2)
    return np.where((gap > 0) & (sd > 0) & np.isfinite(n), np.maximum(n, 2), np.nan)

"""Tests of concept TCAV scores against random concepts, and multiple-testing corrections.

Three tests are offered (see the README's "Statistics" section for the calibration
measurement behind the default):

- ``empirical``: the concept's mean score is ranked among the scores of many random-vs-random
  CAVs (each with its own random positive set). Random CAVs are symmetric around 0.5 (swapping
  the two random sets negates the CAV and turns a score t into 1 - t), so the two-sided p-value
  is ``(1 + #{j : |t_j - 0.5| >= |mean - 0.5|}) / (M + 1)``. The concept's R CAVs share their
  positive examples, so their mean is one draw of a concept-level statistic, not R draws; this
  test treats it so, and is conservative.
- ``welch``: the classic two-sided Welch t-test of the R concept scores vs the random scores.
  It treats the R correlated concept CAVs as independent samples and is not calibrated.
- ``one_sample``: the TCAV reference code's t-test of the concept scores against 0.5.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

TESTS = ("empirical", "welch", "one_sample")
#: Per-CAV statistics a test can compare, with the value random CAVs are symmetric around.
STATISTICS = {"derivative": 0.0, "tcav": 0.5, "magnitude": 0.5}
CORRECTIONS = ("bh", "bonferroni", "none")


def p_value(concept: np.ndarray, random: np.ndarray, test: str = "empirical",
            center: float = 0.5) -> float:
    """Two-sided p-value that the concept's scores differ from the random concepts'.

    ``center`` is the value random CAVs are symmetric around: 0.5 for TCAV scores, 0 for
    mean directional derivatives.
    """
    concept = np.asarray(concept, dtype=float)
    random = np.asarray(random, dtype=float)
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


def adjust(p: np.ndarray, method: str = "bh") -> np.ndarray:
    """Multiple-testing adjusted p-values: Benjamini-Hochberg, Bonferroni or none."""
    p = np.asarray(p, dtype=float)
    if p.size == 0 or method == "none":
        return p.copy()
    if method == "bh":
        return stats.false_discovery_control(p, method="bh")
    if method == "bonferroni":
        return np.minimum(1.0, p * p.size)
    raise ValueError(f"Unknown correction {method!r}; choose one of {', '.join(CORRECTIONS)}.")

"""Plain-language findings of a stored run: one verdict per concept and target (TCAV per layer,
and the causal effect where the run measured one) and the statistics used, in one paragraph.

Every function returns plain text (the HTML report escapes it) built only from the run's
tables, so a sentence never claims more than a stored number shows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from attnxai.audit.records import RunRecord
from attnxai.schema import PAIRS
from attnxai.stats import INCONCLUSIVE, NEGLIGIBLE, NULL_GROUP, RELIES

#: Words for each causal-effect measure (attnxai.effects.table), in reading order.
MEASURE_WORDS = {
    "output_logit": "output effect on the target's logit",
    "output_prob": "output effect on the target's probability",
    "patch_restore": "patching restores",
    "patch_remove": "patching removes",
    "cav_intervention": "CAV intervention",
}
CORRECTION_WORDS = {"hierarchical": "the two-level procedure of Benjamini and Bogomolov (each "
                                    "concept first tested as a whole by its Simes p-value, "
                                    "Benjamini–Hochberg across concepts, then across the layers "
                                    "of the concepts selected)",
                    "bh": "Benjamini–Hochberg (false discovery rate)",
                    "bonferroni": "Bonferroni", "none": "no multiple-testing correction"}
STATISTIC_WORDS = {"derivative": "the mean attention-weighted directional derivative of each CAV",
                   "tcav": "the sign-count TCAV score of each CAV",
                   "magnitude": "the magnitude score of each CAV"}
PAIRED_TEST_WORDS = {"sign_flip": "a sign-flip permutation test of the mean paired difference",
                     "wilcoxon": "the Wilcoxon signed-rank test of the paired differences",
                     "grouped": "the grouped test against the run's null CAVs moved by the same "
                                "step"}


def fmt(value: float | None, digits: int = 3) -> str:
    """A number as the report prints it (``digits`` decimals; "n/a" when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    """A p-value to three significant digits ("n/a" when missing)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.3g}"


def _layers(values: Iterable[int]) -> str:
    values = [str(int(v)) for v in values]
    return f"layer{'s' if len(values) > 1 else ''} {', '.join(values)}"


def testable(row: pd.Series | Mapping[str, Any]) -> bool:
    """Whether a summary row (a Series or a mapping) could be tested: some gradient reaches
    its layer's players (rows without the column: yes)."""
    value = row.get("testable")
    return True if value is None or pd.isna(value) else bool(value)


def tcav_verdict(rows: pd.DataFrame, alpha: float) -> str:
    """What one concept's summary rows for one dataset, target and weighting show, layer by
    layer: the significant layers (direction, TCAV, adjusted p), the others, the unreliable
    and those that cannot be tested (no gradient reaches their players)."""
    rows = rows.sort_values("layer")
    can = rows.apply(testable, axis=1).astype(bool) if len(rows) else rows["reliable"]
    untestable = rows[~can]
    rows = rows[can]
    sig = rows[rows["significant"]]
    unreliable = rows[~rows["reliable"]]
    rest = rows[~rows["significant"] & rows["reliable"]]
    parts = []
    if sig.empty:
        tested = rows[rows["reliable"]]
        if tested.empty:
            parts.append("no layer could be tested")
        else:
            best = tested.loc[tested["p_adjusted"].idxmin()]
            parts.append(f"no significant layer at α = {alpha:g} (smallest adjusted p "
                         f"{fmt_p(best['p_adjusted'])}, layer {int(best['layer'])})")
    else:
        parts.append("significant at " + ", ".join(
            f"layer {int(r.layer)} ({r.direction}; TCAV {fmt(r.mean)}, adjusted p "
            f"{fmt_p(r.p_adjusted)})" for r in sig.itertuples()))
        if not rest.empty:
            parts.append(f"not significant at {_layers(rest['layer'])}")
    if not unreliable.empty:
        parts.append(f"CAVs unreliable at {_layers(unreliable['layer'])} (accuracy below the "
                     "threshold)")
    if not untestable.empty:
        parts.append(f"not testable at {_layers(untestable['layer'])} (no gradient reaches its "
                     "tokens there)")
    return "; ".join(parts)


def row_verdict(r: pd.Series) -> str:
    """A stored effects row's verdict: relies, negligible or inconclusive. Rows of runs before
    the minimum relevant effect were tested against 0: significant reads as relies, anything
    else as inconclusive (nothing is shown negligible without a margin)."""
    v = r.get("verdict")
    if isinstance(v, str) and v:
        return v
    return RELIES if bool(r["significant"]) else INCONCLUSIVE


def _delta(r: pd.Series) -> float:
    d = r.get("min_effect")
    return 0.0 if d is None or pd.isna(d) else float(d)


def _settle(r: pd.Series) -> str:
    n = r.get("n_needed")
    return "" if n is None or pd.isna(n) else f"; about {int(n)} pairs would settle it"


def _against(r: pd.Series) -> str:
    """How one row stands against its minimum relevant effect δ, in words."""
    verdict, delta = row_verdict(r), _delta(r)
    if verdict == RELIES:
        return (f"beyond δ = {delta:g}" if delta > 0 else "non-zero") + \
            f" (adjusted p {fmt_p(r['p_adjusted'])})"
    if verdict == NEGLIGIBLE:
        return f"negligible: within ±{delta:g} (adjusted p {fmt_p(r.get('p_negligible'))})"
    return ((f"inconclusive against δ = {delta:g}" if delta > 0 else "not significant")
            + f" (adjusted p {fmt_p(r['p_adjusted'])}{_settle(r)})")


def _effect_clause(measure: str, rows: pd.DataFrame) -> str:
    name = MEASURE_WORDS.get(measure, measure)
    if (rows["layer"] < 0).all():  # an output effect: one number per concept and target
        r = rows.iloc[0]
        return (f"{name} {r['mean']:+.3f} (95% CI {fmt(r['ci_low'])} to {fmt(r['ci_high'])}; "
                f"{_against(r)}; {int(r['n_pairs'])} pairs)")
    rows = rows.sort_values("layer")
    verdicts = rows.apply(row_verdict, axis=1)
    relies = rows[verdicts == RELIES]
    delta = _delta(rows.iloc[0])
    if relies.empty:
        negligible = rows[verdicts == NEGLIGIBLE]
        bar = f"beyond δ = {delta:g}" if delta > 0 else "significant"
        text = (f"{name}: no layer {bar} (smallest adjusted p "
                f"{fmt_p(rows['p_adjusted'].min())})")
        if len(negligible) == len(rows):
            return text + f"; negligible at every layer (within ±{delta:g})"
        if not negligible.empty:
            return text + f"; negligible at {_layers(negligible['layer'])}"
        return text

    def detail(r: pd.Series) -> str:
        share = r["share"]
        size = f"share {fmt(share, 2)}" if pd.notna(share) else f"mean {r['mean']:+.3f}"
        return f"{int(r['layer'])} ({size})"
    bar = f"beyond δ = {delta:g}" if delta > 0 else "significant"
    return f"{name}: {bar} at layer{'s' if len(relies) > 1 else ''} " + ", ".join(
        detail(r) for _, r in relies.iterrows())


def effect_verdict(rows: pd.DataFrame) -> str:
    """What one concept's effects rows for one dataset and target show, measure by measure."""
    order = [m for m in MEASURE_WORDS if m in set(rows["measure"])]
    order += sorted(set(rows["measure"]) - set(order))
    return "; ".join(_effect_clause(m, rows[rows["measure"] == m]) for m in order)


def _test_words(test: str, num_cavs: int, num_random: int, num_null: int) -> str:
    if test == "grouped":
        return (f"the grouped test, a random-effects test: the {num_null} null CAVs "
                f"(random-vs-random CAVs) come in groups of {NULL_GROUP} that share one random "
                "positive set, as a concept's CAVs share its examples; the spread between and "
                "within the groups gives the null variance of the concept's mean over its "
                f"{num_cavs} CAVs, and the mean is compared with it by a t distribution with one "
                "degree of freedom per group")
    if test == "empirical":
        return (f"the empirical test, which ranks the concept's mean among the {num_null} single "
                f"null CAVs, p = (1 + the number at least as extreme) / {num_null + 1}")
    if test == "welch":
        return (f"Welch's t-test of the concept's {num_cavs} CAV scores against {num_random} "
                "random CAVs' (it treats correlated CAVs as independent and is not calibrated)")
    if test == "one_sample":
        return ("a one-sample t-test of the concept's CAV scores against the symmetry centre, "
                "as in the TCAV reference code (not calibrated)")
    return f"the {test} test"


def statistics_paragraph(run: RunRecord, summary: pd.DataFrame,
                         effects: pd.DataFrame | None = None) -> str:
    """The statistics of the run in one plain paragraph: CAVs, test, statistic, null size,
    correction, alpha, reliability threshold, seed (and the tests of the causal effects)."""
    tcav = run.config.tcav
    first = summary.iloc[0]
    test, statistic = str(first["test"]), str(first["statistic"])
    correction = str(first["correction"])
    num_cavs, num_random = int(summary["num_cavs"].max()), int(summary["num_random"].max())
    num_null = int(summary["num_null"].max())
    negatives = ", ".join(dict.fromkeys(summary["negatives"].astype(str)))
    text = (f"Each concept was tested at every layer with {num_cavs} CAVs (negatives: "
            f"{negatives}), on {STATISTIC_WORDS.get(statistic, statistic)}, by "
            f"{_test_words(test, num_cavs, num_random, num_null)}. The p-values of all "
            f"{len(summary)} tests of the run (dataset × target × concept × layer × weighting) "
            f"were adjusted with {CORRECTION_WORDS.get(correction, correction)}; a layer is "
            f"significant when its adjusted p is below α = {tcav.alpha:g} and its CAVs are "
            f"reliable (mean held-out accuracy at least {tcav.min_accuracy:g}; unreliable layers "
            f"are never significant). {num_random} further random CAVs give the random baseline "
            f"drawn as the grey band. Every random choice used seed {run.seed}.")
    if effects is not None and not effects.empty:
        tests = [PAIRED_TEST_WORDS.get(t, t) for t in dict.fromkeys(effects["test"].astype(str))]
        text += (" Of the causal effects, output effects and activation patching compare "
                 "matched pairs (an example with the concept and its counterexample without it), "
                 "and CAV interventions move the target inputs' activations along each of the "
                 "concept's CAVs by the concept's own scale along them; each "
                 "reports a mean with a 95% Student-t interval, tested by "
                 f"{' and '.join(tests)}, and their p-values are adjusted together across the "
                 "run's effect tests.")
        effects_cfg = run.config.effects
        if effects_cfg.min_effect > 0 or effects_cfg.min_logit_effect > 0:
            text += (" Each effect is tested against a minimum relevant effect δ "
                     f"({effects_cfg.min_effect:g} of probability, {effects_cfg.min_logit_effect:g} "
                     "of logit): it relies when the test of |effect| > δ rejects (a two-sided "
                     "minimum-effect test), it is negligible when the two one-sided tests of "
                     "equivalence within ±δ reject, and it is inconclusive otherwise; the "
                     "significance marks mean “relies”.")
    return text


def _tcav_direction(rows: pd.DataFrame) -> str:
    return ", ".join(dict.fromkeys(rows["direction"].astype(str)))


def deciding_row(causal: pd.DataFrame) -> tuple[str, pd.Series]:
    """The verdict of several effects rows of one concept (it relies when any row does, is
    negligible when every row is, else inconclusive) and the row that decides it."""
    verdicts = causal.apply(row_verdict, axis=1)
    if (verdicts == RELIES).any():
        rows = causal[verdicts == RELIES]
        return RELIES, rows.loc[rows["p_adjusted"].idxmin()]
    if (verdicts == NEGLIGIBLE).all():
        return NEGLIGIBLE, causal.loc[causal["mean"].abs().idxmax()]
    return INCONCLUSIVE, causal.loc[causal["p_adjusted"].idxmin()]


def _effect_evidence(causal: pd.DataFrame, output: bool) -> tuple[str, float, str]:
    """The causal rows' verdict, the mean of the row that decides it, and that row in words."""
    how = "its pairs' output effect" if output else "CAV intervention"
    unit = " on the probability" if (causal["measure"] == "output_prob").all() else " on the logit"
    verdict, r = deciding_row(causal)
    where = "" if output or pd.isna(r.get("layer")) else f" at layer {int(r['layer'])}"
    return verdict, float(r["mean"]), f"{how} is {r['mean']:+.3f}{unit}{where}, {_against(r)}"


def _causal_rows(effect_rows: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The rows a concept's causal verdict rests on: its pairs' output effect on the
    probability (or on the logit, where only that was stored), else its CAV interventions; and
    whether they are an output effect."""
    output = effect_rows[effect_rows["measure"] == "output_prob"]
    if output.empty:  # an effects table of `attnxai effect` may hold the logit rows only
        output = effect_rows[effect_rows["measure"] == "output_logit"]
    if not output.empty:
        return output, True
    return effect_rows[effect_rows["measure"] == "cav_intervention"], False


#: The relevance of a concept whose run measured no causal effect for it.
NOT_MEASURED = "not measured"


def causal_label(effect_rows: pd.DataFrame | None) -> tuple[str, float]:
    """A concept's causal verdict (relies, negligible, inconclusive, or NOT_MEASURED) and the
    mean of the row deciding it: its pairs' output effect, else its CAV interventions, of
    which a negligible one is inconclusive (it does not show the class ignores the concept;
    runs since the zoo's CAV-intervention figures store none, older runs may)."""
    if effect_rows is None:
        return NOT_MEASURED, math.nan
    causal, output = _causal_rows(effect_rows)
    if causal.empty:
        return NOT_MEASURED, math.nan
    verdict, row = deciding_row(causal)
    if verdict == NEGLIGIBLE and not output:
        return INCONCLUSIVE, float(row["mean"])
    return verdict, float(row["mean"])


def with_relevance(summary: pd.DataFrame, effects: pd.DataFrame | None) -> pd.DataFrame:
    """``summary`` with each row's concept's causal verdict for its dataset and target
    (``relevance``) and ``relies``: TCAV is significant at the row's layer *and* the concept's
    effect is shown beyond the minimum relevant effect, the same way round. This is what a
    TCAV chart's ★ marks; a significant layer without it is a TCAV flag whose relevance is not
    shown (on the ground-truth zoo, TCAV alone flagged 4 of 21 inert vision cases)."""
    out = summary.copy()
    relevance = pd.Series(NOT_MEASURED, index=out.index, dtype=object)
    agrees = pd.Series(False, index=out.index)
    keys = ["dataset", "target", "concept"]
    for (dataset, target, concept), rows in out.groupby(keys, sort=False):
        mine = None if effects is None or effects.empty else effects[
            (effects["target"] == target) & (effects["concept"] == concept)
            & effects["dataset"].isin([PAIRS, dataset])]
        label, mean = causal_label(mine)
        relevance[rows.index] = label
        if label == RELIES:
            agrees[rows.index] = rows["direction"].eq("positive" if mean > 0 else "negative")
    out["relevance"] = relevance
    out["relies"] = out["significant"].astype(bool) & (relevance == RELIES) & agrees
    return out


def combined_verdict(concept: str, tcav_rows: pd.DataFrame, effect_rows: pd.DataFrame | None
                     ) -> str:
    """One plain sentence on whether the class relies on ``concept``, which way, and how
    strongly the evidence says so, from its TCAV rows (one dataset, target and weighting) and
    its causal-effect rows (the same target), each tested against the run's minimum relevant
    effect; it says so when the two disagree. The causal effect is the stronger evidence: it
    measures what the concept does to the output, where TCAV measures a local gradient
    sensitivity, which can be consistent and still far too small to matter."""
    tcav_sig = tcav_rows[tcav_rows["significant"]]
    tcav_says = not tcav_sig.empty
    direction = _tcav_direction(tcav_sig) if tcav_says else ""
    if effect_rows is None or effect_rows.empty:
        return (f"TCAV finds {concept} significant ({direction}); no causal effect was measured."
                if tcav_says else f"TCAV finds no significant layer for {concept}; no causal "
                "effect was measured.")
    causal, has_output = _causal_rows(effect_rows)
    if causal.empty:
        return (f"TCAV finds {concept} significant ({direction}); no effect on the output was "
                "measured." if tcav_says else f"TCAV finds no significant layer for {concept}; "
                "no effect on the output was measured.")
    verdict, mean, evidence = _effect_evidence(causal, has_output)
    moves = "raises" if mean > 0 else "lowers"
    if verdict == RELIES:
        if tcav_says and direction in ("positive", "negative") and \
                (direction == "positive") != (mean > 0):
            return (f"The concept {concept} {moves} the class: {evidence}; TCAV's significant "
                    f"direction ({direction}) points the other way, so trust the causal test.")
        if tcav_says:
            return (f"The concept {concept} {moves} the class, and both tests agree: TCAV is "
                    f"significant ({direction}) and {evidence}.")
        return (f"The concept {concept} {moves} the class, which TCAV misses: {evidence}, while "
                "TCAV has no significant layer (it measures a local gradient, the shortcut acts "
                "through a finite change).")
    if verdict == NEGLIGIBLE and not has_output:
        # A push along the CAVs by the concept's mean projection gap is small next to what
        # inserting the concept does (shapes-vit: +0.004 logit for the planted texture, whose
        # pairs move it by +2.6), so a negligible push does not show the class ignores it.
        tcav = f"is significant ({direction})" if tcav_says else "has no significant layer"
        return (f"A push along the CAVs of {concept}, as large as the concept's own step, "
                f"barely moves the class: {evidence}; that does not show the class ignores "
                f"{concept} itself (TCAV {tcav}): matched pairs of examples with and without it "
                "would measure that.")
    if verdict == NEGLIGIBLE:
        if tcav_says:
            return (f"The class does not rely on {concept} enough to matter: {evidence}, though "
                    f"TCAV is significant ({direction}); the sensitivity TCAV finds is real but "
                    "too small to move the output, so do not read the TCAV flag as reliance.")
        return (f"The class does not rely on {concept}: {evidence}, and TCAV has no significant "
                "layer.")
    if tcav_says and has_output:
        return (f"Inconclusive: TCAV is significant for {concept} ({direction}) but {evidence}; "
                "until the output effect settles it, treat the TCAV flag with care.")
    if tcav_says:
        # Measured on shapes-vit without its pairs: the planted concept found in 1 of 5 seeds.
        return (f"TCAV is significant for {concept} ({direction}) but {evidence}; without "
                "matched pairs that test has little power (README), so this does not contradict "
                "TCAV: pairs of examples with and without the concept would settle it.")
    return (f"No evidence that the class relies on {concept}: TCAV has no significant layer and "
            f"{evidence}.")

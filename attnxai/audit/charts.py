"""Altair charts of a stored audit's results, shared by the dashboard's Results page and the
HTML report (:mod:`attnxai.audit.report_html`), so both show the same specs. Presentation
only: every number comes from the run's tables."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

GREY = "#b8bec4"
BAND = "#d5dbe0"
PALETTE = ["#3b6e8f", "#d08c3b", "#5a9a6b", "#9b5a8f", "#c05050", "#6b6bb8", "#8f7a3b",
           "#3b8f8a"]


def _col(df: pd.DataFrame, name: str, default: float = np.nan) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(default, index=df.index)


def significance_caption(summary: pd.DataFrame, alpha: float | None) -> str:
    """Which test and correction produced the stars, in words."""
    test = summary["test"].iloc[0] if "test" in summary else "?"
    stat = summary["statistic"].iloc[0] if "statistic" in summary else None
    corr = summary["correction"].iloc[0] if "correction" in summary else "?"
    corr_name = {"hierarchical": "two-level (concepts, then their layers)",
                 "bh": "Benjamini–Hochberg", "bonferroni": "Bonferroni", "none": "no"}.get(corr, corr)
    test_name = {"grouped": "grouped random-effects", "empirical": "empirical-null", "welch": "Welch t", "one_sample": "one-sample t (vs 0.5)"
                 }.get(test, test)
    on = f" on the {stat}" if stat else ""
    a = f" at α = {alpha:g}" if alpha is not None else ""
    return (f"★ = relies: TCAV significant{a} ({test_name} test{on} against random concepts, "
            f"{corr_name} correction across all tests of the run) and the concept's causal "
            "effect shown beyond the minimum relevant effect δ, the same way round. ☆ = TCAV "
            "significant, but its effect on the output is not shown to matter (negligible, "
            "inconclusive or not measured). Grey points: unreliable layers (CAV accuracy "
            "below the threshold, never significant); grey crosses, n/t: layers not testable (no "
            "gradient reaches their tokens). Shaded band: random concepts, mean ± std.")


def _relies(summary: pd.DataFrame) -> pd.Series:
    """What a ★ marks: ``relies`` (:func:`attnxai.audit.verdicts.with_relevance`); a summary
    without it (no relevance attached) marks TCAV's significant layers as before."""
    return (summary["relies"] if "relies" in summary else summary["significant"]).astype(bool)


def _long_scores(df: pd.DataFrame) -> pd.DataFrame:
    """Sign-count and magnitude scores of each (concept, layer) as rows, with their random band."""
    parts = []
    for metric, mean, std, rmean, rstd in [
        ("sign-count TCAV", "mean", "std", "random_mean", "random_std"),
        ("magnitude", "magnitude_mean", "magnitude_std", "random_magnitude_mean",
         "random_magnitude_std"),
    ]:
        if mean not in df:
            continue
        part = pd.DataFrame({
            "concept": df["concept"], "layer": df["layer"].astype(int), "metric": metric,
            "score": df[mean], "sd": _col(df, std, 0.0).fillna(0.0),
            "random": _col(df, rmean), "random_sd": _col(df, rstd, np.nan),
            "significant": df["significant"].astype(bool), "relies": _relies(df),
            "reliable": df["reliable"].astype(bool),
            "p_value": _col(df, "p_value"), "p_adjusted": _col(df, "p_adjusted"),
            "cav_accuracy": _col(df, "cav_accuracy"),
            "testable": _col(df, "testable", True).fillna(True).astype(bool),
        })
        # The sign-count band's spread stands in where no magnitude spread is reported.
        part["random_sd"] = part["random_sd"].fillna(_col(df, "random_std", 0.0)).fillna(0.0)
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["lo"] = (out["score"] - out["sd"]).clip(0, 1)
    out["hi"] = (out["score"] + out["sd"]).clip(0, 1)
    out["random_lo"] = (out["random"] - out["random_sd"]).clip(0, 1)
    out["random_hi"] = (out["random"] + out["random_sd"]).clip(0, 1)
    out["star_y"] = (out["hi"] + 0.07).clip(upper=1.08)
    out["status"] = np.where(out["relies"], "relies",
                             np.where(out["significant"], "TCAV only",
                                      np.where(out["reliable"], "not significant",
                                               "unreliable CAVs")))
    # A layer no gradient reaches has no score to show: a grey cross on the 0.5 line says so.
    untestable = ~out["testable"]
    out.loc[untestable, ["score", "lo", "hi", "random", "random_lo", "random_hi"]] = np.nan
    out["status"] = np.where(untestable, "not testable", out["status"])
    out["untestable_y"] = np.where(untestable, 0.5, np.nan)
    return out


def layer_chart(summary: pd.DataFrame, concepts: list[str] | None = None) -> alt.FacetChart:
    """Layer-wise scores per concept: sign-count TCAV beside magnitude, ± std error bars, the
    random-concept band, ★ where the concept relies, ☆ where TCAV alone is significant,
    unreliable layers greyed, layers no gradient
    reaches shown as a grey cross without a score."""
    df = _long_scores(summary)
    domain = concepts or sorted(df["concept"].unique())
    color = alt.Color("concept:N", scale=alt.Scale(domain=domain, range=PALETTE), legend=None)
    x = alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0))
    y_scale = alt.Scale(domain=[0, 1.1], nice=False, clamp=True)
    tooltip = ["concept:N", "layer:O", "metric:N", alt.Tooltip("score:Q", format=".3f"),
               alt.Tooltip("sd:Q", title="std", format=".3f"),
               alt.Tooltip("random:Q", title="random mean", format=".3f"),
               alt.Tooltip("p_value:Q", title="p", format=".4f"),
               alt.Tooltip("p_adjusted:Q", title="p adjusted", format=".4f"),
               alt.Tooltip("cav_accuracy:Q", title="CAV accuracy", format=".3f"), "status:N"]
    base = alt.Chart()
    band = base.mark_area(color=BAND, opacity=0.7).encode(
        x=x, y=alt.Y("random_lo:Q", scale=y_scale, title="score"), y2="random_hi:Q")
    band_line = base.mark_line(color="#8a949c", strokeDash=[2, 2], strokeWidth=1).encode(
        x=x, y=alt.Y("random:Q", scale=y_scale))
    half = base.mark_rule(color="#9aa3ab", strokeDash=[4, 4]).encode(y=alt.datum(0.5))
    line = base.mark_line(strokeWidth=1.6).encode(x=x, y=alt.Y("score:Q", scale=y_scale),
                                                   color=color)
    bars = base.mark_rule(strokeWidth=1.4).encode(
        x=x, y=alt.Y("lo:Q", scale=y_scale), y2="hi:Q",
        color=alt.condition("datum.reliable", color, alt.value(GREY)))
    points = base.mark_point(filled=True, size=60, opacity=1).encode(
        x=x, y=alt.Y("score:Q", scale=y_scale),
        color=alt.condition("datum.reliable", color, alt.value(GREY)),
        shape=alt.Shape("status:N", scale=alt.Scale(
            domain=["relies", "TCAV only", "not significant", "unreliable CAVs",
                    "not testable"],
            range=["diamond", "triangle-up", "circle", "square", "cross"]),
            legend=alt.Legend(title=None, orient="top")),
        tooltip=tooltip)
    untestable = base.mark_point(shape="cross", size=70, color=GREY, filled=True).encode(
        x=x, y=alt.Y("untestable_y:Q", scale=y_scale), tooltip=["concept:N", "layer:O",
                                                                 "status:N"]
    ).transform_filter("!datum.testable")
    stars = base.mark_text(text="★", fontSize=15, color="#c0392b").encode(
        x=x, y=alt.Y("star_y:Q", scale=y_scale)).transform_filter("datum.relies")
    hollow = base.mark_text(text="☆", fontSize=15, color="#6b7680").encode(
        x=x, y=alt.Y("star_y:Q", scale=y_scale)).transform_filter(
        "datum.significant && !datum.relies")
    layered = alt.layer(band, band_line, half, line, bars, points, untestable, stars, hollow,
                        data=df)
    return layered.properties(width=320, height=170).facet(
        row=alt.Row("concept:N", title=None, sort=domain,
                    header=alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold",
                                      labelOrient="top", labelFontSize=13)),
        column=alt.Column("metric:N", title=None, sort=["sign-count TCAV", "magnitude"],
                          header=alt.Header(labelFontSize=12)),
    ).resolve_scale(x="independent")


def accuracy_chart(accuracy: pd.DataFrame, threshold: float, concepts: list[str] | None = None
                   ) -> alt.LayerChart:
    """Held-out CAV accuracy per layer and concept (mean ± std over the CAVs)."""
    df = accuracy.copy()
    domain = concepts or sorted(df["concept"].unique())
    color = alt.Color("concept:N", scale=alt.Scale(domain=domain, range=PALETTE),
                      legend=alt.Legend(orient="top", title=None))
    df["lo"] = (df["accuracy"] - df["sd"]).clip(0, 1)
    df["hi"] = (df["accuracy"] + df["sd"]).clip(0, 1)
    x = alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0))
    y = alt.Y("accuracy:Q", title="held-out CAV accuracy", scale=alt.Scale(domain=[0.4, 1.0]))
    base = alt.Chart(df)
    rule = alt.Chart(pd.DataFrame({"t": [threshold]})).mark_rule(
        color="#c0392b", strokeDash=[5, 3]).encode(y="t:Q")
    label = alt.Chart(pd.DataFrame({"t": [threshold], "text": [f"reliability threshold {threshold:g}"]})
                      ).mark_text(align="left", dx=4, dy=-6, color="#c0392b", fontSize=11
                                  ).encode(y="t:Q", text="text:N", x=alt.value(0))
    line = base.mark_line(point=True).encode(
        x=x, y=y, color=color,
        tooltip=["concept:N", "layer:O", alt.Tooltip("accuracy:Q", format=".3f"),
                 alt.Tooltip("sd:Q", title="std", format=".3f")])
    bars = base.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    return alt.layer(rule, label, bars, line).properties(height=300)


def heatmap(summary: pd.DataFrame, concepts: list[str] | None = None) -> alt.LayerChart:
    """Concept × layer: mean sign-count TCAV (diverging around 0.5), ★ relies, ☆ TCAV alone,
    unreliable cells faded, cells of layers no gradient reaches grey and marked "n/t"."""
    df = summary[["concept", "layer", "mean", "significant", "reliable"]].copy()
    for c in ("magnitude_mean", "p_adjusted", "cav_accuracy"):
        df[c] = _col(summary, c)
    df["testable"] = _col(summary, "testable", True).fillna(True).astype(bool).to_numpy()
    df["layer"] = df["layer"].astype(int)
    relies = _relies(summary).to_numpy()
    df["label"] = df["mean"].map("{:.2f}".format) + np.where(
        relies, " ★", np.where(df["significant"], " ☆", ""))
    df.loc[~df["testable"], "label"] = "n/t"
    df.loc[~df["testable"], "mean"] = np.nan  # no colour: not a score of 0
    domain = concepts or sorted(df["concept"].unique())
    base = alt.Chart(df).encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("concept:N", title=None, sort=domain))
    rect = base.mark_rect(stroke="white", strokeWidth=2).encode(
        color=alt.Color("mean:Q", title="TCAV", scale=alt.Scale(
            scheme="redblue", reverse=True, domain=[0, 1], domainMid=0.5)),
        opacity=alt.condition("datum.reliable", alt.value(1.0), alt.value(0.25)),
        tooltip=["concept:N", "layer:O", alt.Tooltip("mean:Q", title="TCAV", format=".3f"),
                 alt.Tooltip("magnitude_mean:Q", title="magnitude", format=".3f"),
                 alt.Tooltip("p_adjusted:Q", title="p adjusted", format=".4f"),
                 alt.Tooltip("cav_accuracy:Q", title="CAV accuracy", format=".3f"),
                 "significant:N", "reliable:N"])
    blank = base.mark_rect(stroke="white", strokeWidth=2, color="#e3e7ea").encode(
        tooltip=["concept:N", "layer:O", alt.Tooltip("testable:N", title="testable")]
    ).transform_filter("!datum.testable")
    text = base.mark_text(fontSize=12).encode(
        text="label:N",
        color=alt.condition("datum.testable && abs(datum.mean - 0.5) > 0.3", alt.value("white"),
                            alt.value("#24313a")))
    return alt.layer(blank, rect, text).properties(height=46 * len(domain) + 80)


def weighting_chart(summary: pd.DataFrame, concepts: list[str] | None = None) -> alt.FacetChart:
    """Attention-weighted against plain token-level TCAV, per concept."""
    df = summary[["concept", "layer", "weighting", "mean", "std", "significant"]].copy()
    df["layer"] = df["layer"].astype(int)
    df["lo"] = (df["mean"] - df["std"].fillna(0)).clip(0, 1)
    df["hi"] = (df["mean"] + df["std"].fillna(0)).clip(0, 1)
    domain = concepts or sorted(df["concept"].unique())
    color = alt.Color("weighting:N", scale=alt.Scale(domain=["attention", "plain"],
                                                     range=["#3b6e8f", "#d08c3b"]),
                      legend=alt.Legend(orient="top", title="weighting"))
    x = alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0))
    y = alt.Y("mean:Q", title="sign-count TCAV", scale=alt.Scale(domain=[0, 1]))
    base = alt.Chart()
    lines = base.mark_line(point=True).encode(
        x=x, y=y, color=color, strokeDash=alt.StrokeDash("weighting:N", legend=None),
        tooltip=["concept:N", "layer:O", "weighting:N", alt.Tooltip("mean:Q", format=".3f"),
                 alt.Tooltip("std:Q", format=".3f"), "significant:N"])
    bars = base.mark_rule(opacity=0.6).encode(x=x, y="lo:Q", y2="hi:Q", color=color)
    return alt.layer(bars, lines, data=df).properties(width=260, height=160).facet(
        facet=alt.Facet("concept:N", title=None, sort=domain), columns=3)


#: The layer-wise effect measures as the effects chart's legend says them.
EFFECT_LABELS = {"patch_restore": "patching restores", "patch_remove": "patching removes",
                 "cav_intervention": "CAV intervention"}


def effect_chart(effects: pd.DataFrame, concepts: list[str] | None = None) -> alt.FacetChart:
    """Layer-wise causal effects per concept (docs/method.md §6): the logit effect restored
    and removed by activation patching, or the CAV intervention's mean change, with 95%
    intervals, ★ where the effect relies (shown beyond the minimum relevant effect δ), and the
    output effect as a dashed reference line. The legend names the measures in words."""
    df = effects[effects["layer"] >= 0].copy()
    df["effect"] = df["measure"].map(EFFECT_LABELS).fillna(df["measure"])
    if "verdict" not in df:  # runs before the verdict: tested against 0
        df["verdict"] = np.where(df["significant"], "relies", "inconclusive")
    total = effects[effects["measure"] == "output_logit"][["concept", "mean"]].rename(
        columns={"mean": "total"})
    df = df.merge(total, on="concept", how="left")
    df["star_y"] = df["ci_high"] + 0.08 * (df["ci_high"] - df["ci_low"]).abs().max()
    domain = concepts or sorted(df["concept"].unique())
    color = alt.Color("effect:N", scale=alt.Scale(
        domain=list(EFFECT_LABELS.values()), range=[PALETTE[0], PALETTE[1], PALETTE[2]]),
        legend=alt.Legend(title=None, orient="top", columns=1, labelLimit=0))
    x = alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0))
    tooltip = ["concept:N", "layer:O", "effect:N", "verdict:N",
               alt.Tooltip("mean:Q", format=".3f"),
               alt.Tooltip("ci_low:Q", title="95% low", format=".3f"),
               alt.Tooltip("ci_high:Q", title="95% high", format=".3f"),
               alt.Tooltip("share:Q", format=".2f"),
               alt.Tooltip("p_adjusted:Q", title="p adjusted", format=".4f")]
    if "min_effect" in df:
        tooltip.append(alt.Tooltip("min_effect:Q", title="δ", format=".3g"))
    base = alt.Chart()
    zero = base.mark_rule(color="#9aa3ab").encode(y=alt.datum(0))
    ref = base.mark_rule(color="#555", strokeDash=[4, 3]).encode(y="total:Q")
    line = base.mark_line(strokeWidth=1.6).encode(x=x, y=alt.Y("mean:Q", title="logit effect"),
                                                   color=color)
    bars = base.mark_rule(strokeWidth=1.3).encode(x=x, y="ci_low:Q", y2="ci_high:Q", color=color)
    points = base.mark_point(filled=True, size=50).encode(x=x, y="mean:Q", color=color,
                                                          tooltip=tooltip)
    stars = base.mark_text(text="★", fontSize=14, color="#c0392b").encode(
        x=x, y="star_y:Q").transform_filter("datum.significant")
    layers = [zero, line, bars, points, stars] + ([ref] if total["total"].notna().any() else [])
    return alt.layer(*layers, data=df).properties(width=320, height=170).facet(
        row=alt.Row("concept:N", title=None, sort=domain,
                    header=alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold",
                                      labelOrient="top", labelFontSize=13)))

"""Altair charts of an audit's tables. Presentation only: every number comes from attnxai."""

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
    corr_name = {"bh": "Benjamini–Hochberg", "bonferroni": "Bonferroni", "none": "no"}.get(corr, corr)
    test_name = {"grouped": "grouped random-effects", "empirical": "empirical-null", "welch": "Welch t", "one_sample": "one-sample t (vs 0.5)"
                 }.get(test, test)
    on = f" on the {stat}" if stat else ""
    a = f" at α = {alpha:g}" if alpha is not None else ""
    return (f"★ = significant{a}: {test_name} test{on} against random concepts, {corr_name} "
            "correction across all tests of the run. Grey points: unreliable layers (CAV accuracy "
            "below the threshold, never significant). Shaded band: random concepts, mean ± std.")


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
            "significant": df["significant"].astype(bool), "reliable": df["reliable"].astype(bool),
            "p_value": _col(df, "p_value"), "p_adjusted": _col(df, "p_adjusted"),
            "cav_accuracy": _col(df, "cav_accuracy"),
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
    out["status"] = np.where(out["significant"], "significant",
                             np.where(out["reliable"], "not significant", "unreliable CAVs"))
    return out


def layer_chart(summary: pd.DataFrame, concepts: list[str] | None = None) -> alt.FacetChart:
    """Layer-wise scores per concept: sign-count TCAV beside magnitude, ± std error bars, the
    random-concept band, ★ for significant layers, unreliable layers greyed."""
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
            domain=["significant", "not significant", "unreliable CAVs"],
            range=["diamond", "circle", "square"]), legend=alt.Legend(title=None, orient="top")),
        tooltip=tooltip)
    stars = base.mark_text(text="★", fontSize=15, color="#c0392b").encode(
        x=x, y=alt.Y("star_y:Q", scale=y_scale)).transform_filter("datum.significant")
    layered = alt.layer(band, band_line, half, line, bars, points, stars, data=df)
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
    """Concept × layer: mean sign-count TCAV (diverging around 0.5), ★ significant,
    unreliable cells faded."""
    df = summary[["concept", "layer", "mean", "significant", "reliable"]].copy()
    for c in ("magnitude_mean", "p_adjusted", "cav_accuracy"):
        df[c] = _col(summary, c)
    df["layer"] = df["layer"].astype(int)
    df["label"] = df["mean"].map("{:.2f}".format) + np.where(df["significant"], " ★", "")
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
    text = base.mark_text(fontSize=12).encode(
        text="label:N",
        color=alt.condition("abs(datum.mean - 0.5) > 0.3", alt.value("white"), alt.value("#24313a")))
    return alt.layer(rect, text).properties(height=46 * len(domain) + 80)


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


# -- local explanations ------------------------------------------------------------------------
def token_chips(tokens: list[str], values: list[float], title: str = "",
                max_width: int = 380) -> alt.LayerChart:
    """Word pieces as coloured chips (red: positive, blue: negative), wrapped into lines.

    Drawn by Altair, so token text is never interpreted as HTML or Markdown."""
    vals = np.asarray(values, dtype=float)
    m = float(np.nanmax(np.abs(vals))) if len(vals) and np.isfinite(vals).any() else 1.0
    m = m or 1.0
    rows, x, line = [], 0.0, 0
    for i, (tok, v) in enumerate(zip(tokens, vals)):
        w = 8.0 * max(len(tok), 1) + 14
        if x + w > max_width and x > 0:
            x, line = 0.0, line + 1
        rows.append({"i": i, "token": tok, "value": float(v), "x0": x, "x1": x + w - 4,
                     "xm": x + (w - 4) / 2, "y0": line * 30, "y1": line * 30 + 24,
                     "ym": line * 30 + 12, "strong": abs(v) > 0.6 * m})
        x += w
    df = pd.DataFrame(rows)
    height = (line + 1) * 30
    width = int(df["x1"].max()) + 2 if len(df) else 100
    base = alt.Chart(df)
    rect = base.mark_rect(cornerRadius=4).encode(
        x=alt.X("x0:Q", scale=None, axis=None), x2="x1:Q",
        y=alt.Y("y0:Q", scale=None, axis=None), y2="y1:Q",
        color=alt.Color("value:Q", scale=alt.Scale(scheme="redblue", reverse=True,
                                                   domain=[-m, m]), legend=None),
        tooltip=[alt.Tooltip("i:Q", title="#"), "token:N", alt.Tooltip("value:Q", format=".4g")])
    text = base.mark_text(fontSize=12, font="monospace").encode(
        x=alt.X("xm:Q", scale=None), y=alt.Y("ym:Q", scale=None), text="token:N",
        color=alt.condition("datum.strong", alt.value("white"), alt.value("#24313a")))
    chart = alt.layer(rect, text).properties(width=width, height=height)
    return chart.properties(title=title) if title else chart


def token_layer_heatmap(tokens: list[str], layers: list[int], values: np.ndarray,
                        concept: str) -> alt.Chart:
    """Per-layer concept sensitivity s'_t: rows layers, columns word pieces."""
    rows = []
    for j, l in enumerate(layers):
        for i, tok in enumerate(tokens):
            rows.append({"layer": int(l), "pos": i, "token": tok, "label": f"{i:02d} {tok}",
                         "value": float(values[j][i])})
    df = pd.DataFrame(rows)
    m = float(np.abs(df["value"]).max()) or 1.0
    return alt.Chart(df).mark_rect(stroke="white", strokeWidth=1).encode(
        x=alt.X("label:N", sort=alt.SortField("pos"), title=None,
                axis=alt.Axis(labelAngle=-50, labelExpr="substring(datum.value, 3)")),
        y=alt.Y("layer:O", title="layer"),
        color=alt.Color("value:Q", title=f"s′ ({concept})",
                        scale=alt.Scale(scheme="redblue", reverse=True, domain=[-m, m])),
        tooltip=["layer:O", "token:N", alt.Tooltip("value:Q", format=".4g")],
    ).properties(height=30 * len(layers) + 120)


def faithfulness_chart(df: pd.DataFrame) -> alt.HConcatChart:
    """Comprehensiveness (higher is better) beside sufficiency (lower is better), per method."""
    base = alt.Chart(df).encode(y=alt.Y("method:N", title=None, sort=list(df["method"])))
    comp = base.mark_bar(color="#3b6e8f").encode(
        x=alt.X("comprehensiveness:Q", title="comprehensiveness ↑"),
        tooltip=["method:N", alt.Tooltip("comprehensiveness:Q", format=".4f")]
    ).properties(width=300, height=28 * len(df))
    suff = base.mark_bar(color="#d08c3b").encode(
        x=alt.X("sufficiency:Q", title="sufficiency ↓"),
        tooltip=["method:N", alt.Tooltip("sufficiency:Q", format=".4f")]
    ).properties(width=300, height=28 * len(df))
    return alt.hconcat(comp, suff)


def probability_chart(labels: list[str], probs: list[float]) -> alt.Chart:
    df = pd.DataFrame({"class": labels, "probability": probs})
    top = max(probs)
    return alt.Chart(df).mark_bar(cornerRadiusEnd=3).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), title="probability"),
        y=alt.Y("class:N", sort="-x", title=None),
        color=alt.condition(alt.datum.probability == top, alt.value("#3b6e8f"),
                            alt.value("#b9c7d0")),
        tooltip=["class", alt.Tooltip("probability:Q", format=".3f")],
    ).properties(height=30 * len(labels) + 50)

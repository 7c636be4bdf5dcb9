"""Altair charts of the dashboard's local explanations and predictions. The charts of an audit's
results live in :mod:`attnxai.audit.charts` (shared with the HTML report)."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd


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

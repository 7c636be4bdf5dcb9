"""Building blocks of the self-contained HTML report: escaping, tables, inline SVG charts and
PNG data URIs. Nothing here refers to a resource outside the page."""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

import altair as alt
from PIL import Image


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Sequence[int] = (),
          row_classes: Iterable[str] | None = None, attrs: dict[str, str] | None = None) -> str:
    """An HTML table; every header and cell is escaped. ``numeric``: indices of the columns to
    right-align; ``row_classes``: one CSS class per row ("" for none); ``attrs``: attributes of
    the ``<table>`` element (values escaped)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    classes = iter(row_classes) if row_classes is not None else None
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>"
                        for i, v in enumerate(row))
        cls = next(classes) if classes is not None else ""
        body.append(f'<tr class="{esc(cls)}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    extra = "".join(f' {k}="{esc(v)}"' for k, v in (attrs or {}).items())
    return (f"<table{extra}><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def key_values(items: Iterable[tuple[str, Any]]) -> str:
    """A definition list of label → value pairs (both escaped)."""
    return '<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>"
                                       for k, v in items) + "</dl>"


_ID = re.compile(r'\bid="([^"]+)"')
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_HREF_REF = re.compile(r'href="#([^"]+)"')


def inline_svg(chart: alt.TopLevelMixin, prefix: str, label: str) -> str:
    """``chart`` rendered to SVG by vl-convert (Altair's SVG engine), for inlining in a page.

    vl-convert names gradients and clip paths with a counter of the process (``gradient_0``,
    ``gradient_1``, ...): another process's chart may reuse a name, and the same chart's names
    change from one rendering to the next. Each id is renamed ``<prefix>-<n>`` in order of
    appearance, with its references, so ids are unique in the page and the page is the same
    for the same run."""
    buf = io.StringIO()
    chart.save(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop any XML prolog: it is not allowed inside HTML
    names = {old: f"{prefix}-{k}" for k, old in enumerate(dict.fromkeys(_ID.findall(svg)))}
    svg = _ID.sub(lambda m: f'id="{names[m.group(1)]}"', svg)
    svg = _URL_REF.sub(lambda m: f"url(#{names.get(m.group(1), m.group(1))})", svg)
    svg = _HREF_REF.sub(lambda m: f'href="#{names.get(m.group(1), m.group(1))}"', svg)
    return svg.replace("<svg", f'<svg role="img" aria-label="{esc(label)}"', 1)


def png_data_uri(image: Image.Image, size: int = 112) -> str:
    """A thumbnail of ``image`` (at most ``size`` pixels a side) as a ``data:image/png`` URI."""
    thumb = image.convert("RGB")
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    thumb.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

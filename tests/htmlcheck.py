"""Parsing an HTML audit report back, and checking that it loads nothing from outside: shared by
tests/test_report_html.py and the browser test's downloaded report."""

from __future__ import annotations

import re
from html.parser import HTMLParser


class Page(HTMLParser):
    """Everything the checks need from a page: tags with attributes, CSS text, ids, plain
    text, and the tables with their attributes and cell texts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.css: list[str] = []
        self.text: list[str] = []
        self.tables: list[dict] = []
        self._in_style = False
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attrs))
        if "style" in attrs:
            self.css.append(attrs["style"])
        self._in_style = tag == "style"
        if tag == "table":
            self.tables.append({"attrs": attrs, "rows": []})
        elif tag == "tr" and self.tables:
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1]["rows"][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.css.append(data)
            return
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def ids(self) -> list[str]:
        return [a["id"] for _, a in self.tags if "id" in a]

    def table(self, cls: str, **attrs: str) -> list[list[str]]:
        """The body rows of the one table of class ``cls`` (and the given data- attributes)."""
        found = [t for t in self.tables if t["attrs"].get("class") == cls
                 and all(t["attrs"].get(f"data-{k}") == v for k, v in attrs.items())]
        assert len(found) == 1, (cls, attrs)
        return found[0]["rows"][1:]


def assert_self_contained(html: str, page: Page) -> None:
    """Nothing on the page loads from elsewhere, and every in-page reference resolves."""
    assert not {t for t, _ in page.tags} & {"script", "link", "iframe", "object", "embed",
                                             "base", "frame", "audio", "video", "source"}
    ids = page.ids()
    assert len(ids) == len(set(ids)), "duplicate ids: one chart would use another's gradients"
    for tag, attrs in page.tags:
        for name, value in attrs.items():
            if name in ("src", "href", "xlink:href", "srcset", "poster", "action", "background"):
                assert value.startswith(("data:", "#")), (tag, name, value[:80])
                if value.startswith("#"):
                    assert value[1:] in ids, f"{tag} {name}={value} points nowhere"
            elif not name.startswith("xmlns"):  # namespace names are identifiers, not loads
                assert "://" not in value and not value.startswith("//"), (tag, name, value)
        if tag == "meta":
            assert "http-equiv" not in attrs
    css = "\n".join(page.css)
    assert "@import" not in css and "expression(" not in css
    for ref in re.findall(r"url\(\s*['\"]?([^)'\"]*)", html):  # CSS and SVG presentation
        assert ref.startswith("#") and ref[1:] in ids or ref.startswith("data:"), ref

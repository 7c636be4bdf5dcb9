"""Widgets for audit options: each option's choices, minimum and default come from the library
(the constraints table :data:`attnxai.tcav.options.CONSTRAINTS` and the config dataclasses'
defaults), so the dashboard defines none of its own. Labels, help and the upper end of an
open-ended range (a widget needs one) are the dashboard's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnxai.audit.config import AuditConfig
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.options import choices, defaults, interval

DEFAULTS: dict[str, Any] = {**defaults(TCAVConfig), **defaults(AuditConfig)}


def select(where: Any, name: str, label: str, labels: Mapping[Any, str] | None = None,
           **kw: Any) -> Any:
    """A select box of option ``name``'s choices at its default (None first when the option
    takes None: its ``labels[None]`` says what None means)."""
    values: list[Any] = list(choices(name))
    if DEFAULTS[name] is None:
        values.insert(0, None)
    shown = labels or {}
    return where.selectbox(label, values, index=values.index(DEFAULTS[name]),
                           format_func=lambda v: shown.get(v, str(v)), **kw)


def number(where: Any, name: str, label: str, *, least: float | None = None,
           most: float | None = None, **kw: Any) -> Any:
    """A number input of option ``name`` at its default, within its interval (``least`` /
    ``most`` narrow it, and give an open end or an open bound a value a widget can take)."""
    bounds = interval(name)
    low, high = bounds.inclusive()
    low = low if least is None else least
    high = high if most is None else most
    cast = int if bounds.kind is int else float
    return where.number_input(label, cast(low), cast(high), cast(DEFAULTS[name]), **kw)

"""Widgets for audit options: each option's choices, minimum and default come from the library
(the constraints table :data:`attnxai.options.CONSTRAINTS` and the config dataclasses'
defaults), so the dashboard defines none of its own. Labels, help and the upper end of an
open-ended range (a widget needs one) are the dashboard's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attnxai.audit.config import AuditConfig
from attnxai.effects.config import EffectsConfig
from attnxai.options import choices, defaults, interval
from attnxai.tcav.config import TCAVConfig

DEFAULTS: dict[str, Any] = {**defaults(TCAVConfig), **defaults(EffectsConfig),
                            **defaults(AuditConfig)}


#: Stands for None in a select box: Streamlit reads a session value of None as "nothing
#: chosen" and shows "Choose an option" when the page is opened again.
OWN = "(own)"


def select(where: Any, name: str, label: str, labels: Mapping[Any, str] | None = None,
           **kw: Any) -> Any:
    """A select box of option ``name``'s choices at its default (None first when the option
    takes None: its ``labels[None]`` says what None means); returns the chosen value (None
    for that first entry)."""
    values: list[Any] = list(choices(name))
    default = OWN if DEFAULTS[name] is None else DEFAULTS[name]
    if DEFAULTS[name] is None:
        values.insert(0, OWN)
    shown = {OWN if k is None else k: v for k, v in (labels or {}).items()}
    fmt = {"format_func": lambda v: shown.get(v, str(v))}
    if _kept(kw, values):  # the session holds the user's choice: it is shown, not the default
        value = where.selectbox(label, values, **fmt, **kw)
    else:
        value = where.selectbox(label, values, index=values.index(default), **fmt, **kw)
    return None if value == OWN else value


def _kept(kw: Mapping[str, Any], values: list[Any] | None = None) -> bool:
    """Whether the widget's key already holds a value in the session (then passing a default
    too would make Streamlit warn); a value no longer among ``values`` is dropped."""
    import streamlit as st

    key = kw.get("key")
    if key is None or key not in st.session_state:
        return False
    if values is not None and st.session_state[key] not in values:
        del st.session_state[key]
        return False
    return True


def number(where: Any, name: str, label: str, *, least: float | None = None,
           most: float | None = None, **kw: Any) -> Any:
    """A number input of option ``name`` at its default, within its interval (``least`` /
    ``most`` narrow it, and give an open end or an open bound a value a widget can take)."""
    bounds = interval(name)
    low, high = bounds.inclusive()
    low = low if least is None else least
    high = high if most is None else most
    cast = int if bounds.kind is int else float
    if _kept(kw):  # the session holds the user's number: it is shown, not the default
        import streamlit as st

        key, held = kw["key"], st.session_state[kw["key"]]
        if (isinstance(held, (int, float)) and not isinstance(held, bool)
                and cast(low) <= held <= cast(high)):
            if type(held) is not cast:
                st.session_state[key] = cast(held)
            return where.number_input(label, cast(low), cast(high), **kw)
        del st.session_state[key]
    return where.number_input(label, cast(low), cast(high), cast(DEFAULTS[name]), **kw)

"""The drill-down's matched pairs: each pair of a paired concept with its output effect on the
target, sorted by effect, both members shown side by side (the run's `pair_effects` table)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui.common import esc, get_store, guard, short_path
from ui.render import thumbnail

SHOWN = 8  # pairs shown with both members; the table lists every pair


@st.cache_data(show_spinner=False, max_entries=16)
def _pairs(path: str, run_id: str) -> pd.DataFrame:
    return get_store().results("pair_effects", run_id)


def _member(col: st.delta_generator.DeltaGenerator, item: str, caption: str) -> None:
    # Image members are recorded as the absolute paths of the concept set's files; texts as is.
    path = Path(item)
    if not path.is_absolute():
        col.markdown(f"{caption}: {esc(item)}")
    elif path.is_file():
        col.image(thumbnail(path, 128), caption=caption, width=128)
    else:
        col.caption(f"{caption}: {esc(path.name)} (the file is no longer there)")


def pairs_section(run_id: str) -> None:
    """Render the run's matched pairs (nothing when the run measured no pair effects)."""
    pairs = None
    with guard("reading the matched pairs"):
        pairs = _pairs(str(get_store().path), run_id)
    if pairs is None or pairs.empty:
        return
    with st.expander("Matched pairs: the causal effect, pair by pair", expanded=False,
                     icon=":material/compare:"):
        c1, c2, c3 = st.columns([1, 1, 2])
        concept = c1.selectbox("Paired concept", list(dict.fromkeys(pairs["concept"])),
                               key="w_pairs_concept")
        target = c2.selectbox("Target class", list(dict.fromkeys(pairs["target"])),
                              key="w_pairs_target")
        sel = pairs[(pairs["concept"] == concept) & (pairs["target"] == target)]
        sel = sel.sort_values("delta_prob", ascending=False)
        c3.caption(f"Each pair shows the same input with {esc(concept)} (example) and without it "
                   f"(counterexample); its effect is the change of P({esc(target)}) and of its logit "
                   "from the counterexample to the example. Sorted by effect, largest first.")
        shown = sel[["pair", "delta_prob", "delta_logit", "example", "counterexample"]].copy()
        for side in ("example", "counterexample"):  # image members: file names, not full paths
            shown[side] = shown[side].map(short_path)
        st.dataframe(shown,
                     hide_index=True, width="stretch", column_config={
                         "delta_prob": st.column_config.NumberColumn("Δ P", format="%+.4f"),
                         "delta_logit": st.column_config.NumberColumn("Δ logit", format="%+.3f")})
        ends = pd.concat([sel.head(SHOWN // 2), sel.tail(SHOWN // 2)]).drop_duplicates("pair")
        for r in ends.itertuples():
            a, b, c = st.columns([2, 2, 1])
            _member(a, r.example, f"pair {r.pair}, with")
            _member(b, r.counterexample, "without")
            c.metric(f"Δ P({target})", f"{r.delta_prob:+.3f}", f"{r.delta_logit:+.2f} logit",
                     delta_color="off")

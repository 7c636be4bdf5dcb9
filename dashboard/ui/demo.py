"""The one-click demo audit offered while the store holds no finished run."""

from __future__ import annotations

import streamlit as st

from attnxai.audit.config import DEMO_EFFECTS, DEMO_TCAV, AuditConfig
from ui.common import (
    DEFAULT_SPEC,
    DEMO_AUDITS,
    DEMO_REF,
    completed_runs,
    demo_concepts,
    get_adapter,
    guard,
    model_lock,
    store_path,
)
from ui.jobs import PANEL_BELOW, current_job, start_audit
from ui import pages


def demo_spec() -> str:
    spec = st.session_state.get("spec", DEFAULT_SPEC)
    return spec if spec in DEMO_AUDITS else DEFAULT_SPEC


def is_demo(config: AuditConfig) -> bool:
    """Whether a run's config is a one-click demo's (its small settings)."""
    return (config.model in DEMO_AUDITS and config.tcav.num_cavs == DEMO_TCAV.num_cavs
            and tuple(config.tcav.layers or ()) == DEMO_TCAV.layers
            and config.tcav.num_null == DEMO_TCAV.num_null
            and tuple(config.concepts) == demo_concepts(config.model))


def start_demo_audit() -> None:
    """Start the demo audit of the session's built-in model (MiniLM for any other model) at
    the library's demo settings (:data:`attnxai.audit.config.DEMO_TCAV`: two layers, fewer
    CAVs, the grouped test's least null; output effects only), so it answers in seconds."""
    spec = demo_spec()
    demo = DEMO_AUDITS[spec]
    st.session_state[PANEL_BELOW] = False  # started from the offer at the top of the page
    concepts = demo_concepts(spec)
    config = AuditConfig(model=spec, datasets=(DEMO_REF,), targets=tuple(demo["targets"]),
                         concepts=concepts,  # yours, then the shipped sets
                         tcav=DEMO_TCAV, effects=DEMO_EFFECTS)
    # The model the pages loaded (without zero-shot labels: the demo uses the built-in's own).
    start_audit(config, f"demo audit: {', '.join(concepts)} → "
                        f"{', '.join(demo['targets'])} on {spec}", store_path(),
                adapter=get_adapter(spec, None), lock=model_lock(f"{spec}|"))


def demo_offer(key: str, switch: bool = True) -> bool:
    """If no run of the session's built-in (MiniLM for any other model) has finished and this
    session has started no audit of it, offer its demo audit; True when the offer was shown.
    So a user who ran the text demo is offered the image demo on switching to shapes-vit.
    (After a cancelled or failed audit the user knows how to start one: the offer does not
    come back.)"""
    spec = demo_spec()
    job = current_job()
    if job is not None and (job.running or job.config.model == spec):
        return False
    with guard("reading the run history"):
        runs = completed_runs()
        if not runs.empty and (runs["model"] == spec).any():
            return False
    demo = DEMO_AUDITS[spec]
    with st.container(border=True):
        st.markdown(f"#### No audit of {spec} yet — start with its demo")
        st.write(f"Tests whether the class **{demo['targets'][0]}** of `{spec}` is sensitive to "
                 f"the concepts **{'** and **'.join(demo_concepts(spec))}** against random concepts "
                 f"at layers {' and '.join(map(str, DEMO_TCAV.layers))}, with the default test "
                 f"on fewer CAVs ({DEMO_TCAV.num_cavs} per concept and layer, "
                 f"{DEMO_TCAV.num_null} random CAVs in the null) and the output effect of the "
                 "concepts with matched pairs, on the demo data. It answers in seconds, and is "
                 "deliberately small: a layer it does not flag may be flagged by **Run audit**'s "
                 "full default audit (every layer, 20 CAVs per concept, 200 in the null).")
        if st.button("Run the demo audit", type="primary", key=key, icon=":material/play_arrow:"):
            with guard("starting the demo audit"):
                start_demo_audit()
                if switch:
                    st.switch_page(pages.RUN)
                st.rerun()
    return True

"""The one-click demo audit offered while the store holds no finished run."""

from __future__ import annotations

import streamlit as st

from attnxai.audit.config import AuditConfig
from attnxai.tcav.config import TCAVConfig
from ui.common import (
    DEFAULT_SPEC,
    DEMO_AUDITS,
    DEMO_REF,
    completed_runs,
    concept_root,
    guard,
    store_path,
)
from ui.jobs import current_job, start_audit
from ui import pages


def demo_spec() -> str:
    spec = st.session_state.get("spec", DEFAULT_SPEC)
    return spec if spec in DEMO_AUDITS else DEFAULT_SPEC


def start_demo_audit() -> None:
    """Start the demo audit of the session's built-in model (MiniLM for any other model), at
    the library's default settings (those whose calibration the README reports)."""
    spec = demo_spec()
    demo = DEMO_AUDITS[spec]
    config = AuditConfig(model=spec, datasets=(DEMO_REF,), targets=tuple(demo["targets"]),
                         concepts=tuple(demo["concepts"]), concept_dir=str(concept_root()))
    start_audit(config, f"demo audit: {', '.join(demo['concepts'])} → "
                        f"{', '.join(demo['targets'])} on {spec}", store_path())


def demo_offer(key: str, switch: bool = True) -> bool:
    """If no run has finished yet, offer the demo audit; True when the offer was shown."""
    job = current_job()
    if job is not None and job.running:
        return False
    with guard("reading the run history"):
        if not completed_runs().empty:
            return False
    spec = demo_spec()
    demo = DEMO_AUDITS[spec]
    with st.container(border=True):
        st.markdown("#### No audit yet — start with the demo")
        st.write(f"Tests whether the class **{demo['targets'][0]}** of `{spec}` is sensitive to "
                 f"the concepts **{'** and **'.join(demo['concepts'])}**, layer by layer, against "
                 f"random concepts at the default settings ({TCAVConfig.num_cavs} CAVs per layer, "
                 f"{TCAVConfig.num_null} random CAVs in the null, demo data). It takes under a "
                 "minute on a laptop CPU.")
        if st.button("Run the demo audit", type="primary", key=key, icon=":material/play_arrow:"):
            with guard("starting the demo audit"):
                start_demo_audit()
                if switch:
                    st.switch_page(pages.RUN)
                st.rerun()
    return True

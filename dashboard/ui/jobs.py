"""Audits in a background thread, so the page stays responsive while one runs.

A session holds at most one :class:`AuditJob` in ``st.session_state["audit_job"]``: the
thread, a progress dict the thread writes and the page reads, and a cancel Event. The
thread never touches Streamlit; it calls :func:`attnxai.audit.runner.run_audit`, which writes the
finished run to the store (a cancelled or failed run leaves no results behind).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from attnxai.errors import UserInputError

log = logging.getLogger("attnxai.dashboard")


@dataclass
class AuditJob:
    config: Any
    description: str
    cancel: threading.Event = field(default_factory=threading.Event)
    progress: dict = field(default_factory=lambda: {"fraction": 0.0, "message": "starting…"})
    thread: threading.Thread | None = None
    status: str = "running"  # running | done | failed | cancelled
    run_id: str | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    announced: bool = False  # the page has shown the outcome once

    @property
    def running(self) -> bool:
        return self.status == "running"

    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the progress so far (None until it means something)."""
        f = float(self.progress.get("fraction", 0.0))
        if not self.running or f < 0.03:
            return None
        return self.elapsed() * (1.0 - f) / f

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def _work(job: AuditJob, store_path: str) -> None:
    from attnxai.audit.runner import AuditCancelled, run_audit
    from attnxai.audit.store import Store

    def progress(fraction: float, message: str) -> None:
        job.progress = {"fraction": max(0.0, min(1.0, float(fraction))), "message": str(message)}

    try:
        store = Store(store_path)
        job.run_id = run_audit(job.config, store, progress=progress, cancel=job.cancel)
        job.status = "done"
    except AuditCancelled:
        job.status = "cancelled"
    except UserInputError as exc:
        job.status, job.error = "failed", str(exc)
    except Exception as exc:  # noqa: BLE001 - reported on the page, traceback in the log
        log.exception("audit failed")
        job.status = "failed"
        job.error = f"The audit stopped with an unexpected error: {type(exc).__name__}: {exc}"
    finally:
        job.finished = time.time()


def start_audit(config: Any, description: str, store_path: str) -> AuditJob:
    """Start ``config`` in a daemon thread and remember the job in the session."""
    job = AuditJob(config=config, description=description)
    job.thread = threading.Thread(target=_work, args=(job, store_path), daemon=True,
                                  name="attnxai-audit")
    st.session_state["audit_job"] = job
    job.thread.start()
    return job


def current_job() -> AuditJob | None:
    return st.session_state.get("audit_job")


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "estimating…"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"

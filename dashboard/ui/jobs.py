"""Audits in a background thread, so the page stays responsive while one runs.

A session holds at most one :class:`AuditJob` in ``st.session_state["audit_job"]``: the
thread, a progress dict the thread writes and the page reads, and a cancel Event. The
thread never touches Streamlit; it calls :func:`attnxai.audit.runner.run_audit` with the model
the pages already loaded (never loading it again), which records the run as running at once and
writes the finished run to the store (a cancelled or failed run leaves no results behind).

While the audit runs it holds that model's lock (:func:`ui.common.model_lock`): the pages that
need the same model object meanwhile say it is busy instead of running beside the audit's
hooks.
"""

from __future__ import annotations

import contextlib
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
    opened: bool = False  # its run has been made the one Results shows
    adapter: Any = None  # the loaded model the audit uses (None: run_audit loads it)
    lock: Any = None  # that model's lock, held while the audit runs
    cancel_requested: float | None = None
    left: tuple[float, float | None] = (0.0, None)  # (when, the run's seconds left then)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def elapsed(self) -> float:
        return (self.finished or time.time()) - self.started

    def request_cancel(self) -> None:
        if self.cancel_requested is None:
            self.cancel_requested = time.time()
        self.cancel.set()

    def cancel_latency(self) -> float | None:
        """Seconds from Cancel to the audit's stop (None until it stopped after a cancel)."""
        if self.cancel_requested is None or self.finished is None:
            return None
        return max(0.0, self.finished - self.cancel_requested)

    def eta(self) -> float | None:
        """Seconds left: the run's own estimate (the work still to do at the rates measured
        so far, :class:`attnxai.audit.progress.Steps`), counted down since it was made; None
        until the run has measured a first rate."""
        when, seconds = self.left
        if not self.running or seconds is None:
            return None
        return max(0.0, seconds - (time.time() - when))

    def wait(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def _work(job: AuditJob, store_path: str) -> None:
    from attnxai.audit.runner import AuditCancelled, run_audit
    from attnxai.audit.store import Store

    def progress(fraction: float, message: str) -> None:
        job.progress = {"fraction": max(0.0, min(1.0, float(fraction))), "message": str(message)}

    def time_left(seconds: float | None) -> None:
        job.left = (time.time(), seconds)

    status, error = "failed", None
    try:
        store = Store(store_path)
        with job.lock.hold(job.description) if job.lock is not None else contextlib.nullcontext():
            job.run_id = run_audit(job.config, store, progress=progress, cancel=job.cancel,
                                   adapter=job.adapter, time_left=time_left)
        status = "done"
    except AuditCancelled:
        status = "cancelled"
    except UserInputError as exc:
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported on the page, traceback in the log
        log.exception("audit failed")
        error = f"The audit stopped with an unexpected error: {type(exc).__name__}: {exc}"
    finally:
        job.finished = time.time()  # before the status, so a page never sees it unset
        job.error, job.status = error, status


def start_audit(config: Any, description: str, store_path: str, adapter: Any = None,
                lock: Any = None) -> AuditJob:
    """Start ``config`` in a daemon thread and remember the job in the session. ``adapter`` is
    the model already loaded for ``config`` (its spec and labels), used as is; ``lock`` its
    :class:`ui.common.ModelGate`, which the audit holds while it runs."""
    job = AuditJob(config=config, description=description, adapter=adapter, lock=lock)
    job.thread = threading.Thread(target=_work, args=(job, store_path), daemon=True,
                                  name="attnxai-audit")
    st.session_state["audit_job"] = job
    job.thread.start()
    return job


#: Session key: the Run page's progress panel stands under the Start button (the audit was
#: started there, at the foot of the form) rather than at the top.
PANEL_BELOW = "_run_panel_below"


def current_job() -> AuditJob | None:
    return st.session_state.get("audit_job")


def open_finished_run() -> None:
    """Once a finished audit is seen, on whatever page, make its run the one Results and the
    drill-down show; only once, so a run the user picks afterwards is kept."""
    job = current_job()
    if job is not None and job.status == "done" and job.run_id and not job.opened:
        st.session_state["run_id"] = job.run_id
        job.opened = True


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "estimating…"
    s = int(round(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def fmt_eta(s: float | None) -> str:
    """A time left as a person would say it: "under a minute", "about 3 min", "about 1 h 20
    min"; "estimating…" while there is no estimate yet."""
    if s is None:
        return "estimating…"
    if s < 60:
        return "under a minute"
    minutes = int(round(s / 60))
    if minutes < 60:
        return f"about {minutes} min"
    hours, rest = divmod(int(round(s / 600)) * 10, 60)
    return f"about {hours} h {rest} min" if rest else f"about {hours} h"

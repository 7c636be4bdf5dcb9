"""The HTML audit report's download button, shared by the Results and History pages."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ui.common import download_button


@lru_cache(maxsize=8)
def _report(db_path: str, run_id: str) -> bytes:
    """The run's report; a completed run never changes, so it is written once per process."""
    from attnxai.audit.report_html import render_report
    from attnxai.audit.store import Store

    return render_report(Store(db_path), run_id).encode("utf-8")


def report_button(where: Any, db_path: str, run_id: str, key: str) -> None:
    """A button in ``where`` (a column, or ``st``) that downloads the completed run's HTML
    report. The report is written only when the button is clicked: rendering its charts takes
    a few seconds, which the page must not wait for."""
    download_button(where, "Download HTML report", lambda: _report(db_path, run_id),
                    file_name=f"attnxai-{run_id}.html", mime="text/html",
                    icon=":material/description:", key=key,
                    help="One self-contained file: verdicts, charts, tables, concept "
                         "examples, provenance. Opens offline and prints to PDF.")

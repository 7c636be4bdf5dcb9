"""State, caching and error display shared by every page of the dashboard.

The dashboard's choices live in ``st.session_state`` under plain keys (not widget keys, which
Streamlit drops when a page stops showing the widget):

- ``spec``      the model spec (default: the offline MiniLM built-in);
- ``labels``    zero-shot labels ``{name: description}`` for the MiniLM built-in, or None;
- ``data_ref``  ``"demo"`` or the path of a dataset file/folder (uploads are saved under
                ``$ATTNXAI_HOME/uploads`` first, so audits can read them again);
- ``run_id``    the run shown on Results and Drill-down.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from attnxai.audit.config import DEMO
from attnxai.io.datasets import IMAGE_EXTENSIONS, Dataset, demo_dataset, load_dataset
from attnxai.errors import UserInputError
from attnxai.models import BUILTINS, load_model

log = logging.getLogger("attnxai.dashboard")

DEFAULT_SPEC = BUILTINS[0]
DEMO_REF = DEMO
#: The one-click demo audit of each built-in: small enough to finish in well under a minute
#: on two CPU cores, real enough to show every chart.
DEMO_AUDITS: dict[str, dict[str, Any]] = {
    # `concepts` are also the Run page's defaults; `paired` joins them in the one-click demo,
    # so that it measures an output effect (its matched pairs) beside TCAV.
    "builtin:minilm-zeroshot": {"targets": ["sports"], "modality": "text",
                                "concepts": ["sports-words", "finance-words"],
                                "paired": ["negation"]},
    "builtin:shapes-vit": {"targets": ["triangle"], "modality": "image",
                           "concepts": ["striped-objects", "red-objects"]},
}


def demo_concepts(spec: str) -> tuple[str, ...]:
    """The concepts of ``spec``'s one-click demo: the Run page's defaults and a paired one."""
    demo = DEMO_AUDITS[spec]
    return (*demo["concepts"], *demo.get("paired", []))


# -- session defaults --------------------------------------------------------------------------
def init_state() -> None:
    """Put the defaults in place on a session's first run."""
    ss = st.session_state
    ss.setdefault("spec", DEFAULT_SPEC)
    ss.setdefault("labels", None)
    ss.setdefault("data_ref", DEMO_REF)
    ss.setdefault("run_id", None)


def home_dir() -> Path:
    """Where the dashboard keeps its database and uploads: $ATTNXAI_HOME, else the store's
    default folder."""
    return Path(store_path()).parent


# -- where the server listens ------------------------------------------------------------------
ALLOW_REMOTE_ENV = "ATTNXAI_ALLOW_REMOTE"


def is_loopback(address: str | None) -> bool:
    """Whether a ``server.address`` setting binds to this machine only. Unset or empty means
    every interface (Streamlit's default when no config file is found)."""
    address = (address or "").strip().strip("[]")
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # empty, or a host name that may resolve anywhere
        return False


def bind_warning(address: str | None, allow_remote: bool = False) -> str | None:
    """The warning to show when the server is reachable from other machines, or None.

    ``.streamlit/config.toml`` (which binds to 127.0.0.1) is read from the current folder
    only, so `streamlit run /path/to/dashboard/app.py` started elsewhere listens on every
    interface. ``allow_remote`` (``ATTNXAI_ALLOW_REMOTE=1``) silences the warning for a
    deliberate remote setup.
    """
    if allow_remote or is_loopback(address):
        return None
    where = f"address {esc(address)}" if (address or "").strip() else "all network interfaces"
    return (f"This dashboard listens on {where}, so other machines can reach it and the data "
            "and models it can read. To keep it on this machine, restart it with "
            "`make run` or `streamlit run dashboard/app.py --server.address 127.0.0.1`; set "
            f"{ALLOW_REMOTE_ENV}=1 if remote access is intended.")


def check_server_settings() -> None:
    """Make up for a missing ``.streamlit/config.toml``: keep tracebacks out of the page unless
    the user asked for them, skip the garbage collection after every script run, and warn when
    the server is not bound to a loopback address.

    Streamlit runs ``gc.collect(2)`` after every run, fragment reruns included. With PyTorch
    and a model loaded that is a third of a CPU-second each time, under the GIL: the progress
    panels refreshing every 2 s then took 0.33 of a core from a running audit (measured with
    the Run page open on a fake audit; 0.01 without it). Python's own GC still runs."""
    from streamlit import config

    if not config.is_manually_set("client.showErrorDetails"):
        st.set_option("client.showErrorDetails", "none")
    if not config.is_manually_set("runner.postScriptGC"):
        config.set_option("runner.postScriptGC", False, "attnxai dashboard (ui.common)")
    message = bind_warning(st.get_option("server.address"),
                           os.environ.get(ALLOW_REMOTE_ENV) == "1")
    if message:
        st.warning(message, icon=":material/public:")


def download_button(where: Any, label: str, data: Any, *, file_name: str, mime: str,
                    icon: str = ":material/download:", **options: Any) -> None:
    """A download button in ``where`` (a column, or ``st``) that never reruns the page: a rerun
    after one download re-registers every deferred download (``data`` a callable), so a click
    on another button while the page reruns could fetch a file that no longer exists; and a
    download needs no re-render of the page."""
    where.download_button(label, data, file_name=file_name, mime=mime, icon=icon,
                          on_click="ignore", **options)


# -- errors ------------------------------------------------------------------------------------
@contextlib.contextmanager
def guard(action: str = "") -> Iterator[None]:
    """Show problems as ``st.error`` with what to do; never a stack trace in the page.

    User errors (bad file, unknown model, ...) carry their own sentence. Anything else is
    logged with its traceback on the server and summarised in one line. Either text can hold
    what a user supplied (a CSV header, a file name), so it is shown escaped, never as Markdown.
    """
    try:
        yield
    except UserInputError as exc:
        st.error(esc(exc), icon=":material/error:")
    except Exception as exc:  # noqa: BLE001 - the page must survive and explain
        if type(exc).__name__ in ("RerunException", "StopException"):
            raise  # Streamlit's own control flow (st.rerun, st.stop, st.switch_page)
        log.exception("dashboard error%s", f" while {action}" if action else "")
        what = f" while {action}" if action else ""
        st.error(f"Something went wrong{what}: {type(exc).__name__}: {esc(exc)}. "
                 "Check the inputs and try again; the server log has the details.",
                 icon=":material/error:")


# -- models ------------------------------------------------------------------------------------
def labels_key(labels: dict[str, str] | None) -> str:
    return json.dumps(labels, sort_keys=False) if labels else ""


#: Reports a one-time step: ``progress(fraction, text)`` (e.g. a page's progress bar).
Progress = Callable[[float, str], None]


@st.cache_resource(show_spinner=False, max_entries=4)
def _load_adapter(spec: str, labels_json: str) -> Any:
    adapter = load_model(spec, labels=json.loads(labels_json) if labels_json else None)
    _loaded().add((spec, labels_json))
    return adapter


@st.cache_resource(show_spinner=False)
def _loaded() -> set[tuple[str, str]]:
    """The (spec, labels) pairs this server process has loaded (so a page knows whether a
    load is a one-time wait worth announcing)."""
    return set()


def get_adapter(spec: str | None = None, labels: dict[str, str] | None = None,
                progress: Progress | None = None) -> Any:
    """The cached adapter of ``spec`` (default: the session's model). Raises UserInputError.

    The first time a model loads in this server, ``progress`` hears what is loading and that
    it happens once; afterwards the same object comes back at once (and the audits use it).
    """
    if spec is None:
        spec, labels = st.session_state["spec"], st.session_state.get("labels")
    adapter = _load_once(spec, "", progress)
    # The session keeps its labels across models; only a model that takes them gets them.
    if labels and adapter.takes_label_descriptions:
        adapter = _load_once(spec, labels_key(labels), progress)
    return adapter


def _load_once(spec: str, labels_json: str, progress: Progress | None) -> Any:
    if progress is not None and (spec, labels_json) not in _loaded():
        progress(0.0, f"Loading {spec} (once per session) …")
    return _load_adapter(spec, labels_json)


def model_key() -> str:
    """A string naming the session's model object (its spec, and its labels when it takes
    them), for data caches and :func:`model_lock`."""
    spec, labels = st.session_state["spec"], st.session_state.get("labels")
    if labels and (spec, "") in _loaded() and not _load_adapter(spec, "").takes_label_descriptions:
        labels = None  # get_adapter gives this model no labels: the same object as without
    return f"{spec}|{labels_key(labels)}"


class ModelBusy(UserInputError):
    """The model is held by a running audit."""


class ModelGate:
    """The lock of one cached model object. The vision adapters record with hooks and the
    causal effects patch blocks, so two threads must never run the same model object at once.

    A page uses it as ``with model_lock(key): ...``: it waits for another page's short use,
    but while an audit holds the model (:meth:`hold`, for the whole audit) it raises
    :class:`ModelBusy` at once, which the page shows as a sentence instead of freezing.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.audit: str | None = None  # what holds it, while an audit does

    def __enter__(self) -> "ModelGate":
        if not self.lock.acquire(timeout=0.5):
            if self.audit is not None:
                raise ModelBusy(f"The model is busy with the running audit ({self.audit}). This "
                                "part needs the same model and works again once the audit "
                                "finishes or is cancelled (Run audit).")
            self.lock.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    @contextlib.contextmanager
    def hold(self, what: str) -> Iterator[None]:
        """Hold the model for an audit (blocking until pages are done with it)."""
        with self.lock:
            self.audit = what
            try:
                yield
            finally:
                self.audit = None


@st.cache_resource(max_entries=16)
def _model_lock(key: str) -> ModelGate:
    return ModelGate()


def model_lock(key: str | None = None) -> ModelGate:
    """One lock per cached model (:class:`ModelGate`)."""
    return _model_lock(key or model_key())


# -- data --------------------------------------------------------------------------------------
def _stamp(ref: str) -> float:
    if ref == DEMO_REF:
        return 0.0
    p = Path(ref)
    return p.stat().st_mtime if p.exists() else -1.0


@st.cache_data(show_spinner="Reading the dataset…", max_entries=8)
def _load_data(ref: str, modality: str, stamp: float) -> Dataset:
    return demo_dataset(modality) if ref == DEMO_REF else load_dataset(ref)


def get_dataset(ref: str | None = None, modality: str | None = None) -> Dataset:
    """The session's dataset (or ``ref``); the demo data follows the model's modality."""
    ref = ref or st.session_state["data_ref"]
    if modality is None:
        modality = get_adapter().modality
    return _load_data(ref, modality, _stamp(ref))


def data_label(ref: str | None = None) -> str:
    ref = ref or st.session_state["data_ref"]
    return "demo data" if ref == DEMO_REF else Path(ref).name


def item_text(x: Any) -> str:
    """A short, plain-text name of a dataset item (a text, or an image's file name)."""
    if isinstance(x, str):
        return x
    if isinstance(x, Path):
        return f"{x.parent.name}/{x.name}"
    return "in-memory image"


@st.cache_resource(show_spinner=False)
def _prediction_cache() -> dict:
    """Previews computed in this server: {(model key, ref, stamp, n): DataFrame}, newest last.
    (A plain dict rather than st.cache_data, so the computation can report its progress.)"""
    return {}


_PREDICTIONS_KEPT = 16
_predictions_lock = threading.Lock()


def predictions(_adapter: Any, key: str, ref: str, stamp: float, n: int,
                progress: Progress | None = None) -> pd.DataFrame:
    """Probabilities of the first ``n`` items of dataset ``ref`` under model ``key``, computed
    once per server (``progress`` hears each batch of that one time)."""
    cache, k = _prediction_cache(), (key, ref, stamp, n)
    with _predictions_lock:
        if k in cache:
            cache[k] = cache.pop(k)  # most recently used last
            return cache[k]
    df = _predict_frame(_adapter, key, ref, stamp, n, progress)
    with _predictions_lock:
        cache[k] = df
        while len(cache) > _PREDICTIONS_KEPT:
            cache.pop(next(iter(cache)))
    return df


def _predict_frame(_adapter: Any, key: str, ref: str, stamp: float, n: int,
                   progress: Progress | None) -> pd.DataFrame:
    ds = _load_data(ref, _adapter.modality, stamp)
    items = ds.items[:n]
    what = f"the first {n} inputs of {data_label(ref)}"

    def tick(done: int, total: int) -> None:
        if progress is not None:
            progress(done / total, f"Classifying {what} ({done}/{total}, once per model and "
                                   "dataset) …")

    tick(0, max(n, 1))
    with model_lock(key):
        probs = _adapter.predict(items, batch_size=16, progress=tick).numpy()
    df = pd.DataFrame({"input": [item_text(x) for x in items]})
    if ds.labels is not None:
        df["label"] = ds.labels[:n]
    df["prediction"] = [_adapter.labels[i] for i in probs.argmax(1)]
    df["probability"] = probs.max(1)
    for j, lab in enumerate(_adapter.labels):
        df[f"p({lab})"] = probs[:, j]
    return df


def dataset_predictions(n: int = 500, progress: Progress | None = None) -> pd.DataFrame:
    adapter = get_adapter(progress=progress)
    ref = st.session_state["data_ref"]
    ds = get_dataset(ref, adapter.modality)
    return predictions(adapter, model_key(), ref, _stamp(ref), min(n, len(ds)), progress)


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def upload_path(name: str, data: bytes, kind: str = "uploads") -> Path:
    """Where :func:`save_upload` keeps ``data`` uploaded as ``name``:
    ``$ATTNXAI_HOME/<kind>/<sha>/<safe name>``."""
    stem, suffix = os.path.splitext(Path(name).name)
    safe = (_SAFE.sub("_", stem).strip("._") or "upload")[:80] + suffix.lower()
    return home_dir() / kind / hashlib.sha256(data).hexdigest()[:16] / safe


def save_upload(name: str, data: bytes, kind: str = "uploads") -> Path:
    """Write uploaded bytes to :func:`upload_path` (atomically) and return the path."""
    path = upload_path(name, data, kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def use_uploaded_dataset(name: str, data: bytes) -> Dataset:
    """Save an uploaded dataset, check that it reads; on any problem remove what this upload
    created and raise, so a bad upload leaves nothing behind.

    Uploads of the same bytes share a folder, so only this upload's own file (and the folder,
    if this upload made it and it is left empty) is removed: an earlier upload of the same
    bytes under another name stays usable.
    """
    path = upload_path(name, data)
    created_file, created_folder = not path.exists(), not path.parent.exists()
    save_upload(name, data)
    try:
        ds = load_dataset(path)
    except Exception:
        if created_file:
            path.unlink(missing_ok=True)
        if created_folder:
            with contextlib.suppress(OSError):  # not empty: another upload arrived meanwhile
                path.parent.rmdir()
        raise
    return ds


def use_uploaded_column(name: str, data: bytes, column: str) -> Dataset:
    """The uploaded CSV or JSONL ``name`` read with its texts in ``column`` (and its ``label``
    column, if any), kept as a two-column CSV beside the uploads, so that the audit and its
    record read the very texts the user picked (a dataset is named by its file)."""
    from attnxai.io.datasets import load_text_dataset

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / Path(name).name
        source.write_bytes(data)
        ds = load_text_dataset(source, text_column=column)
    frame = pd.DataFrame({"text": ds.items, **({"label": ds.labels} if ds.labels else {})})
    stem = Path(name).stem
    # Written as it is read back: no formula neutralising, which would change the texts.
    return use_uploaded_dataset(f"{stem}.{column}.csv",
                                frame.to_csv(index=False).encode("utf-8"))


# -- the store ---------------------------------------------------------------------------------
def store_path() -> str:
    """The audit database: ``$ATTNXAI_HOME/audits.duckdb`` (default home ``~/.attnxai``)."""
    from attnxai.audit.store import default_db_path

    return str(default_db_path())


def get_store() -> Any:
    """The run store (DuckDB). A Store opens a short connection per operation, so one object
    serves every session and the audit threads."""
    path = Path(store_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    return _store(str(path))


@st.cache_resource(max_entries=4)
def _store(path: str) -> Any:
    from attnxai.audit.store import Store

    return Store(path)


def list_runs() -> pd.DataFrame:
    return get_store().list_runs()


def completed_runs() -> pd.DataFrame:
    runs = list_runs()
    if runs.empty:
        return runs
    return runs[runs["status"] == "completed"]


def run_label(row: Any) -> str:
    created = pd.to_datetime(row["created"]).strftime("%Y-%m-%d %H:%M") if row["created"] else ""
    return (f"{created} UTC · {row['model']} · {row['concepts']} → {row['targets']} · "
            f"{row['run_id']}")


def run_picker(runs: pd.DataFrame, key: str) -> str:
    """A select box of completed runs that remembers the choice across pages; the run id."""
    ss = st.session_state
    ids = list(runs["run_id"])
    if ss.get("run_id") not in ids:
        ss["run_id"] = ids[0]
    labels = {r["run_id"]: run_label(r) for _, r in runs.iterrows()}
    ss["run_id"] = st.selectbox("Run", ids, index=ids.index(ss["run_id"]), format_func=labels.get,
                                key=key)
    return ss["run_id"]


def short_path(value: object) -> str:
    """An image input as a table shows it: its folder and file name (a full path's start
    would hide the name in a narrow column); anything else (a text) as it is."""
    text = str(value)
    path = Path(text)
    if path.suffix.lower() in IMAGE_EXTENSIONS and len(path.parts) > 2:
        return f"{path.parent.name}/{path.name}"
    return text


def concept_root() -> Path:
    """Where new concept sets are saved: the user's folder (``$ATTNXAI_HOME/concept_sets``, or
    ``$ATTNXAI_CONCEPTS``). Sets are listed and looked up there and then among the shipped,
    read-only sets (the library's default lookup, ``root=None``)."""
    from attnxai.io.concepts import default_concept_root

    return default_concept_root()


# Every character that can start Markdown syntax in Streamlit: links and images ![x](url),
# HTML tags <...>, entities &...;, $ math, :emoji: and :color[...] directives, headings and
# rules (# - = *), emphasis, tables, and GFM autolinks (http:// and www. need ':' or '.').
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


def esc(text: object) -> str:
    """User text made literal inside Markdown: each syntax character is backslash-escaped, so
    no link, image, HTML, math or directive in it takes effect."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))

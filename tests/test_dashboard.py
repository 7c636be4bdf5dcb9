"""The dashboard's pages under Streamlit's AppTest: each renders; the concept studio persists a
new set; a tiny audit started on Run audit completes and its charts appear on Results; the CSV
download holds the run's rows, and Results and History offer its HTML report; drill-down and
history work on it; bad uploads show an error and store nothing.

Every test gets its own $ATTNXAI_HOME (audit store, uploads) and concept folder. The audit uses
trimmed copies of the shipped text sets (12 examples, a pool of 100) and tiny settings so it
runs in seconds on two CPU cores.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pandas as pd
import pytest

AppTest = pytest.importorskip("streamlit.testing.v1").AppTest
ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
PAGES = ["setup", "concepts", "run", "results", "drilldown", "history"]


def _problems(at) -> list[str]:
    return [e.value for e in at.exception] + [e.value for e in at.error]


def _run_to_the_end(at):
    """Press Start audit on the Run page, wait for the audit, and see it reported finished;
    its job."""
    [b for b in at.button if b.label == "Start audit"][0].click().run()
    assert not _problems(at)
    job = at.session_state["audit_job"]
    job.wait(240)
    assert job.status == "done", job.error
    at.run()
    assert any("Finished" in s.value for s in at.success)
    return job


def _small_run(at, layers: list[int], random: int = 2) -> None:
    """The Run page's form at a small audit: ``layers``, 3 CAVs per concept, ``random``
    random CAVs, 20 in the null, at most 6 inputs per target."""
    at.multiselect(key="w_run_layers").set_value(layers)
    at.number_input(key="w_run_cavs").set_value(3)
    at.number_input(key="w_run_random").set_value(random)
    at.number_input(key="w_run_null").set_value(20)
    at.number_input(key="w_run_limit").set_value(6)


def _shown(markdown: str) -> str:
    """Markdown source as the page shows it: user text is backslash-escaped (``esc``)."""
    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A fresh home and a concept folder holding trimmed copies of three shipped text sets."""
    from attnxai.io.concepts import load_concept_set, save_concept_set

    home, concepts = tmp_path / "home", tmp_path / "concepts"
    home.mkdir()
    for name, n in (("random-text", 100), ("sports-words", 12), ("finance-words", 12)):
        cs = load_concept_set(ROOT / "concept_sets" / name)
        cs.examples = cs.examples[:n]
        save_concept_set(cs, concepts)
    monkeypatch.setenv("ATTNXAI_HOME", str(home))
    monkeypatch.setenv("ATTNXAI_CONCEPTS", str(concepts))
    return home, concepts


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=180)


def test_every_page_renders_without_a_run(env):
    at = _app().run()
    assert not _problems(at)
    # Setup opens on the offline MiniLM built-in with its card and the demo data's predictions.
    assert at.selectbox(key="w_model_pick").value == "builtin:minilm-zeroshot"
    assert [m.value for m in at.metric][:4] == ["text", "6", "12", "4"]
    assert any(b.label == "Run the demo audit" for b in at.button)
    assert len(at.get("vega_lite_chart")) >= 1
    for page in PAGES[1:]:
        at.switch_page(f"views/{page}.py").run()
        assert not _problems(at), page
    # Results explains itself and offers the demo while no run exists.
    at.switch_page("views/results.py").run()
    assert any("No finished audit yet" in m.value for m in at.markdown)
    assert any(b.label == "Run the demo audit" for b in at.button)


def test_setup_switches_model_and_reports_a_bad_spec(env):
    at = _app().run()
    at.selectbox(key="w_model_pick").select("builtin:shapes-vit").run()
    assert not _problems(at)
    assert [m.value for m in at.metric][0] == "image"
    assert any("Planted shortcut" in i.value for i in at.info)
    at.selectbox(key="w_model_pick").select(at.selectbox(key="w_model_pick").options[-1]).run()
    at.text_input(key="w_model_custom").input("/no/such/model/folder").run()
    assert not at.exception
    assert any("No such model folder" in e.value for e in at.error)
    # An id not in the local cache: the advice reads as text, without literal backticks.
    at.text_input(key="w_model_custom").input("some-org/not-cached-model").run()
    advice = [_shown(e.value) for e in at.error if "never downloads" in _shown(e.value)]
    assert advice and "`" not in advice[0] and "“huggingface-cli download" in advice[0]


def test_bad_dataset_upload_shows_an_error_and_stores_nothing(env):
    home, _ = env
    at = _app().run()
    at.radio(key="w_data_source").set_value("Upload a file").run()
    at.file_uploader(key="w_data_upload").set_value(("broken.jsonl", b"{not json\n", "application/json"))
    at.run()
    assert not at.exception
    assert any("broken.jsonl" in _shown(e.value) and "line 1" in e.value for e in at.error)
    assert at.session_state["data_ref"] == "demo"
    assert not [p for p in (home / "uploads").rglob("*") if p.is_file()]
    assert any("broken.jsonl is not used yet; still using" in _shown(c.value) for c in at.caption)
    # A CSV whose quote is never closed is refused, not read as one glued text.
    at.file_uploader(key="w_data_upload").set_value(
        ("glued.csv", b'text,label\nfine,sports\n"open,sports\nmore,sports\n', "text/csv"))
    at.run()
    assert any("never closed" in _shown(e.value) for e in at.error)
    assert at.session_state["data_ref"] == "demo"


def test_good_dataset_upload_is_used(env):
    at = _app().run()
    at.radio(key="w_data_source").set_value("Upload a file").run()
    data = "text,label\n" + "".join(f"Match {i} ends in a late winner,sports\n" for i in range(6))
    at.file_uploader(key="w_data_upload").set_value(("my data.csv", data.encode(), "text/csv"))
    at.run()
    assert not _problems(at)
    assert at.session_state["data_ref"].endswith("my_data.csv")
    assert [m.value for m in at.metric][4] == "6"


def test_concept_studio_creates_a_set_that_persists(env):
    from attnxai.audit.store import Store

    _, concepts = env
    at = _app().run()
    at.switch_page("views/concepts.py").run()
    assert at.selectbox(key="w_cs_pick").value == "New concept set…"
    name = [w for w in at.text_input if w.label == "Name"][0]
    name.input("weather-talk")
    [w for w in at.text_area if w.label == "Description"][0].input("Sentences about weather.")
    lines = "\n".join(f"Heavy rain and strong wind expected on day {i}" for i in range(12))
    [w for w in at.text_area if w.label.startswith("Examples")][0].input(lines)
    [w for w in at.radio if w.label == "Negatives for its CAVs"][0].set_value(
        "A random pool of the same kind")
    at.run()
    assert not _problems(at)
    assert any("Ready to save" in s.value for s in at.success)
    [b for b in at.button if b.label == "Save concept set"][0].click().run()
    assert not _problems(at)
    assert any("Saved weather-talk" in _shown(s.value) for s in at.success)
    saved = concepts / "weather-talk" / "concept.json"
    assert saved.is_file()
    from attnxai.io.concepts import load_concept_set

    cs = load_concept_set("weather-talk", concepts)
    assert len(cs.examples) == 12 and cs.default_pool == "random-text"
    versions = Store().concept_versions("weather-talk")
    assert list(versions["version_hash"]) == [cs.version_hash()]
    # The new set opens for editing, with nothing left to save, and is offered on Run audit.
    assert at.selectbox(key="w_cs_pick").value == "weather-talk"
    assert not any("Ready to save" in s.value for s in at.success)
    assert any("No changes to save" in i.value for i in at.info)
    assert [b for b in at.button if b.label == "Save concept set"][0].disabled
    at.switch_page("views/run.py").run()
    assert "weather-talk" in at.multiselect(key="w_run_concepts").options


def test_concept_studio_rejects_a_bad_import_and_too_few_examples(env):
    _, concepts = env
    before = sorted(p.name for p in concepts.iterdir())
    at = _app().run()
    at.switch_page("views/concepts.py").run()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("evil/concept.json", '{"format": 1, "name": "../evil"}')
    at.file_uploader(key="cs_import_0").set_value(("evil.zip", buf.getvalue(), "application/zip"))
    at.run()
    [b for b in at.button if b.label == "Import"][0].click().run()
    assert not at.exception
    assert at.error, "a bad import must show an error"
    assert sorted(p.name for p in concepts.iterdir()) == before
    # Validation as you go: too few examples disables saving.
    [w for w in at.text_input if w.label == "Name"][0].input("tiny")
    [w for w in at.text_area if w.label.startswith("Examples")][0].input("one\ntwo")
    at.run()
    assert any("at least 10" in w.value for w in at.warning)
    assert [b for b in at.button if b.label == "Save concept set"][0].disabled


def test_tiny_audit_from_run_page_to_results_csv_drilldown_history(env, monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        if isinstance(path_or_data, bytes) and filename:
            files[filename] = path_or_data
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    deferred: dict[str, object] = {}  # downloads written when clicked: file name -> callable
    add_deferred = MediaFileManager.add_deferred

    def remember(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        deferred[file_name] = data_callable
        return add_deferred(self, data_callable, mimetype, coordinates, file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", remember)

    at = _app().run()
    at.switch_page("views/run.py").run()
    assert not _problems(at)
    assert at.multiselect(key="w_run_targets").value == ["sports"]
    assert at.multiselect(key="w_run_concepts").value == ["sports-words", "finance-words"]
    _small_run(at, [4, 5], random=3)
    job = _run_to_the_end(at)
    # The outcome is shown under the Start button, where the user pressed it.
    order = [getattr(e, "label", None) or getattr(e, "value", None) for e in at.main]
    start = order.index("Start audit")
    assert any(isinstance(v, str) and v.startswith("Finished") for v in order[start:])

    at.switch_page("views/results.py").run()
    assert not _problems(at)
    assert at.session_state["run_id"] == job.run_id
    assert len(at.get("vega_lite_chart")) >= 3  # layer-wise, heatmap, CAV accuracy, weightings
    assert any("grouped random-effects test" in c.value for c in at.caption)
    summary_name = f"attnxai-{job.run_id}.csv"
    assert summary_name in files
    csv = pd.read_csv(io.BytesIO(files[summary_name]))
    # 2 concepts x 2 layers x 2 weightings for one target, all of this run
    assert len(csv) == 8 and set(csv["run_id"]) == {job.run_id}
    assert set(csv["concept"]) == {"sports-words", "finance-words"}
    assert set(csv["layer"]) == {4, 5}
    report = deferred.pop(f"attnxai-{job.run_id}.html")()  # the HTML report's download
    assert report.startswith(b"<!DOCTYPE html>") and job.run_id.encode() in report

    at.switch_page("views/drilldown.py").run(timeout=240)
    assert not _problems(at)
    assert any(d.value.shape[0] == 6 for d in at.dataframe)  # the run's 6 inputs
    assert any("mean over 3 CAVs" in c.value for c in at.caption)

    at.switch_page("views/history.py").run()
    assert not _problems(at)
    assert [m.value for m in at.metric][0] == "1"  # one completed run
    assert f"attnxai-{job.run_id}.html" in deferred  # History offers the report too
    at.checkbox(key=f"hist_sure_{job.run_id}").check().run()
    [b for b in at.button if b.label == "Delete run"][0].click().run()
    assert not _problems(at)
    from attnxai.audit.store import Store

    assert Store().list_runs().empty


def test_cancel_leaves_no_results(env):
    at = _app().run()
    at.switch_page("views/run.py").run()
    at.number_input(key="w_run_cavs").set_value(3)
    at.number_input(key="w_run_null").set_value(20)
    [b for b in at.button if b.label == "Start audit"][0].click().run()
    job = at.session_state["audit_job"]
    job.cancel.set()
    job.wait(240)
    assert job.status in ("cancelled", "done")
    at.run()
    assert not at.exception
    if job.status == "cancelled":
        assert any("cancelled" in w.value for w in at.warning)
        from attnxai.audit.store import Store

        runs = Store().list_runs()
        assert (runs["status"] != "completed").all()


def _png(draw) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (32, 32), (235, 235, 235))
    draw(img)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_shipped_sets_are_listed_read_only_beside_yours(env):
    """Your sets (the env's concept folder) and the shipped ones are listed, marked by source;
    a shipped set opens read-only: no save, no delete, and nothing is written into it."""
    from attnxai.io.concepts import shipped_concept_root

    shipped = shipped_concept_root()
    before = sorted(p.name for p in shipped.iterdir())
    at = _app().run()
    at.switch_page("views/concepts.py").run()
    assert not _problems(at)
    table = [d.value for d in at.dataframe][0]
    sources = dict(zip(table["name"], table["source"]))
    assert sources["sports-words"] == "yours"  # the env's copy hides the shipped one
    assert sources["weather"] == "shipped" and sources["negation"] == "shipped"
    at.selectbox(key="w_cs_pick").select("weather").run()
    assert not _problems(at)
    assert any("read-only" in i.value for i in at.info)
    assert [b for b in at.button if b.label == "Save concept set"][0].disabled
    assert [b for b in at.button if b.label == "Delete"][0].disabled
    assert sorted(p.name for p in shipped.iterdir()) == before


def test_run_form_keeps_settings_across_pages_and_a_cancel(env):
    at = _app().run()
    at.switch_page("views/run.py").run()
    at.multiselect(key="w_run_concepts").set_value(["finance-words"])
    at.multiselect(key="w_run_layers").set_value([5])
    at.number_input(key="w_run_cavs").set_value(3)
    at.number_input(key="w_run_null").set_value(20)
    at.selectbox(key="w_run_test").set_value("welch")
    at.selectbox(key="w_run_cav").set_value("pattern")
    at.selectbox(key="w_run_effects").set_value("output")
    at.selectbox(key="w_run_paired_test").set_value("wilcoxon")
    at.run()
    assert not _problems(at)
    # Another page and back: the settings are the user's, not the demo defaults.
    at.switch_page("views/concepts.py").run()
    at.switch_page("views/run.py").run()
    assert not _problems(at)
    assert at.multiselect(key="w_run_concepts").value == ["finance-words"]
    assert at.multiselect(key="w_run_layers").value == [5]
    assert at.number_input(key="w_run_cavs").value == 3
    assert at.selectbox(key="w_run_test").value == "welch"
    assert at.selectbox(key="w_run_effects").value == "output"
    # "The model's own" query row is still chosen, not "Choose an option" (a None in session).
    assert at.selectbox(key="w_run_pooling").value == "(own)"
    assert at.selectbox(key="w_run_pooling").format_func("(own)") == "the model's own"
    # Start records the run at once and uses the model the pages loaded.
    [b for b in at.button if b.label == "Start audit"][0].click().run()
    job = at.session_state["audit_job"]
    from attnxai.audit.store import Store
    import time

    deadline = time.time() + 30
    while Store().list_runs().empty and time.time() < deadline:
        time.sleep(0.05)
    runs = Store().list_runs()
    assert len(runs) == 1 and runs["status"][0] in ("running", "cancelled", "completed")
    assert job.adapter is not None and job.adapter.spec == "builtin:minilm-zeroshot"
    assert (job.config.tcav.test, job.config.tcav.cav, job.config.tcav.matched_null) == (
        "welch", "pattern", "sign_flip")  # the form's choices reach the audit
    assert job.config.tcav.pooling is None  # the model's own, as the library spells it
    assert (job.config.effects.level, job.config.effects.paired_test) == ("output", "wilcoxon")
    job.request_cancel()
    job.wait(240)
    at.run()
    assert not _problems(at)
    if job.status == "cancelled":
        assert job.cancel_latency() is not None
        assert any("cancelled" in w.value for w in at.warning)
        assert not any("Cancelling" in c.value for c in at.caption)  # no stale running panel
        assert Store().list_runs()["status"][0] == "cancelled"
    assert not any("start with its demo" in m.value for m in at.markdown)  # no demo offer
    assert at.multiselect(key="w_run_concepts").value == ["finance-words"]
    assert at.number_input(key="w_run_cavs").value == 3
    assert not [b for b in at.button if b.label == "Start audit"][0].disabled


def test_image_concept_set_audit_and_drilldown_through_the_ui(env):
    """The image paths end to end: upload matched pairs into a new image set in the Concept
    studio, audit it on builtin:shapes-vit from Run audit, read Results, and open an image in
    the drill-down (its patch overlays)."""
    from PIL import ImageDraw

    from attnxai.io.concepts import load_concept_set

    _, concepts = env
    at = _app()
    at.session_state["spec"] = "builtin:shapes-vit"  # the session starts on the image model
    at.run()
    assert not _problems(at)
    assert at.selectbox(key="w_model_pick").value == "builtin:shapes-vit"
    at.switch_page("views/concepts.py").run()
    assert not _problems(at)
    [w for w in at.text_input if w.label == "Name"][0].input("my-stripes")
    [w for w in at.text_area if w.label == "Description"][0].input("Blue stripes on a shape.")
    [w for w in at.radio if w.label == "Negatives for its CAVs"][0].set_value(
        "Its own counter-examples (the same inputs without the concept)")
    at.run()

    def shape(i: int, stripes: bool):
        def draw(img):
            d = ImageDraw.Draw(img)
            x = 4 + i % 6
            d.rectangle([x, 6, x + 18, 26], fill=(200, 60, 40))
            if stripes:
                for y in range(6, 27, 4):
                    d.line([x, y, x + 18, y], fill=(30, 60, 220), width=2)
        return draw

    examples = [(f"s{i}.png", _png(shape(i, True)), "image/png") for i in range(10)]
    counter = [(f"p{i}.png", _png(shape(i, False)), "image/png") for i in range(10)]
    uploaders = {u.label.split(" (")[0]: u for u in at.file_uploader}
    uploaders["Upload examples"].set_value(examples)
    uploaders["Upload counterexamples"].set_value(counter)
    at.run()
    assert not _problems(at)
    assert any("Ready to save" in s.value and "10 counter-examples" in s.value
               for s in at.success)
    [b for b in at.button if b.label == "Save concept set"][0].click().run()
    assert not _problems(at)
    assert any("Saved my-stripes" in _shown(s.value) for s in at.success)
    cs = load_concept_set("my-stripes")  # in the user's folder, with a shipped pool
    assert cs.folder == concepts / "my-stripes" and cs.default_pool == "random-scenes"
    assert cs.modality == "image" and cs.paired
    assert (len(cs.examples), len(cs.counterexamples)) == (10, 10)

    at.switch_page("views/run.py").run()
    assert not _problems(at)
    assert "my-stripes" in at.multiselect(key="w_run_concepts").options
    at.multiselect(key="w_run_concepts").set_value(["my-stripes"])
    at.multiselect(key="w_run_targets").set_value(["triangle"])
    _small_run(at, [5], random=2)
    job = _run_to_the_end(at)

    at.switch_page("views/results.py").run()
    assert not _problems(at)
    assert at.session_state["run_id"] == job.run_id
    assert len(at.get("vega_lite_chart")) >= 2

    at.switch_page("views/drilldown.py").run(timeout=240)
    assert not _problems(at)
    assert any(d.value.shape[0] == 6 for d in at.dataframe)  # the run's 6 triangles
    # The input, one patch overlay per attribution method, one per layer of the concept map.
    images = at.get("image")
    assert len(images) >= 1 + 4 + 1, len(images)
    assert any("mean over 3 CAVs" in c.value for c in at.caption)


def test_eta_is_said_in_words_and_counts_down_the_runs_estimate(monkeypatch):
    from ui import jobs

    assert [jobs.fmt_eta(s) for s in (None, 12, 59, 61, 170, 3000, 4000, 7300)] == [
        "estimating…", "under a minute", "under a minute", "about 1 min", "about 3 min",
        "about 50 min", "about 1 h 10 min", "about 2 h"]
    now = [1000.0]
    monkeypatch.setattr(jobs.time, "time", lambda: now[0])
    job = jobs.AuditJob(config=None, description="d", started=1000.0)
    assert job.eta() is None  # the run has measured nothing yet
    job.left = (1010.0, 90.0)  # the run said 90 s left at t = 10 s
    now[0] = 1040.0
    assert job.eta() == pytest.approx(60.0)  # counted down between two reports
    now[0] = 1200.0
    assert job.eta() == 0.0  # never negative
    job.status = "done"
    assert job.eta() is None


def test_decoder_only_classifier_audit_through_the_ui(env, tmp_path):
    """A GPT-2 sequence classifier folder (its tokenizer without a padding token) audited from
    Run audit: the audit weights by the last real token's attention, and Results shows it."""
    import attnxai
    from attnxai.io.datasets import demo_dataset
    from test_model_families import _save

    folder = tmp_path / "gpt2"
    _save("gpt2", folder)
    adapter = attnxai.load_model(str(folder), device="cpu")
    predicted = adapter.predict(demo_dataset("text").items).argmax(1)
    target = adapter.labels[int(predicted.mode().values)]  # the class most inputs get
    at = _app()
    at.session_state["spec"] = str(folder)
    at.run()
    assert not _problems(at)
    at.switch_page("views/run.py").run()
    assert not _problems(at)
    at.multiselect(key="w_run_targets").set_value([target])
    at.multiselect(key="w_run_concepts").set_value(["sports-words"])
    _small_run(at, [0, 1], random=2)
    job = _run_to_the_end(at)
    from attnxai.audit.store import Store

    assert job.adapter.pooling == "last"
    assert Store().get_run(job.run_id).config.tcav.pooling == "last"  # as the run resolved it
    at.switch_page("views/results.py").run()
    assert not _problems(at)
    assert at.session_state["run_id"] == job.run_id
    assert len(at.get("vega_lite_chart")) >= 2


def test_results_open_the_run_that_finished_while_the_user_was_elsewhere(env):
    """An audit finishes while the user reads another page: Results then opens that run, not
    the one the session showed before; a run picked afterwards is kept."""
    from attnxai.audit.config import DEMO_EFFECTS, AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.tcav.config import TCAVConfig

    small = TCAVConfig(layers=(5,), num_cavs=3, num_random=2, num_null=20)
    old = run_audit(AuditConfig(model="builtin:minilm-zeroshot", targets=("sports",),
                                concepts=("sports-words",), tcav=small, effects=DEMO_EFFECTS,
                                limit=6), Store())
    at = _app()
    at.session_state["run_id"] = old  # the run the session was showing
    at.run()
    at.switch_page("views/run.py").run()
    at.multiselect(key="w_run_concepts").set_value(["finance-words"])
    _small_run(at, [5], random=2)
    [b for b in at.button if b.label == "Start audit"][0].click().run()
    job = at.session_state["audit_job"]
    at.switch_page("views/concepts.py").run()  # elsewhere while it runs
    job.wait(240)
    assert job.status == "done", job.error
    at.run()
    at.switch_page("views/results.py").run()
    assert not _problems(at)
    assert at.session_state["run_id"] == job.run_id != old
    at.selectbox(key="w_results_run").set_value(old).run()  # the user picks the older run ...
    at.switch_page("views/run.py").run()
    at.switch_page("views/results.py").run()
    assert at.session_state["run_id"] == old  # ... and it stays picked


def test_the_other_built_ins_demo_is_offered_after_a_run_of_one(env):
    """A finished MiniLM run keeps MiniLM's demo offer away, not shapes-vit's."""
    from attnxai.audit.config import DEMO_EFFECTS, AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.tcav.config import TCAVConfig

    run_audit(AuditConfig(model="builtin:minilm-zeroshot", targets=("sports",),
                          concepts=("sports-words",), effects=DEMO_EFFECTS, limit=6,
                          tcav=TCAVConfig(layers=(5,), num_cavs=3, num_random=2, num_null=20)),
              Store())
    offers = {}
    for spec in ("builtin:minilm-zeroshot", "builtin:shapes-vit"):
        at = _app()
        at.session_state["spec"] = spec
        at.run()
        assert not _problems(at)
        offers[spec] = [m.value for m in at.markdown if "start with its demo" in m.value]
    assert offers["builtin:minilm-zeroshot"] == []
    assert offers["builtin:shapes-vit"] == ["#### No audit of builtin:shapes-vit yet — start "
                                            "with its demo"]


def test_a_csv_without_a_text_column_gets_a_column_picker(env):
    """Two text-like columns and no `text`: the page asks which holds the texts, and the
    chosen column (with the labels) becomes the data."""
    at = _app().run()
    at.radio(key="w_data_source").set_value("Upload a file").run()
    csv = "title,body,label\n" + "".join(f"Title {i},the team won match {i},sports\n"
                                         for i in range(6))
    at.file_uploader(key="w_data_upload").set_value(("news.csv", csv.encode(), "text/csv"))
    at.run()
    assert not at.exception and not at.error
    assert any("pick the one that does" in _shown(w.value) for w in at.warning)
    assert at.selectbox(key="w_data_text_column").options == ["title", "body", "label"]
    assert at.session_state["data_ref"] == "demo"  # nothing used until a column is picked
    at.selectbox(key="w_data_text_column").set_value("body").run()
    [b for b in at.button if b.label == "Use this column"][0].click().run()
    assert not at.exception and not at.error
    from attnxai.io.datasets import load_dataset

    ds = load_dataset(at.session_state["data_ref"])
    assert ds.items[0] == "the team won match 0" and ds.labels == ["sports"] * 6

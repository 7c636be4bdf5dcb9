"""Regression tests of the reliability defects of issue 14: each bad input, fault or attack that
once escaped as a traceback, hung, or did harm is now refused at once with one clear sentence.

- Markdown injection: user text shown in the dashboard is escaped (``esc``), never rendered.
- Zip datasets and concept-set zips are checked from the zip directory before any member is
  decompressed, then read one bounded member at a time.
- Deep JSON, bad seeds and batch sizes, corrupt weights and images, and any unexpected
  exception in the CLI give one sentence and the promised exit code.
- A DuckDB lock is recognised by DuckDB's own message, not by a word of the path.
- The dashboard warns when it is reachable from other machines.
- A failed upload removes only what it created.
- A run whose process died has an unknown duration, not 0.0.
- The activation cache has a size cap (oldest entries evicted) and `attnxai cache info|clear`.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

from attnxai.audit.store import (CACHE_MAX_BYTES_ENV, Store, StoreError, StoreLockedError,
                                 _is_lock_error)
from attnxai.cli.main import main
from attnxai.errors import ConceptSetError, DataError, ModelLoadError
from attnxai.io import concepts as concepts_mod
from attnxai.io import datasets as datasets_mod
from attnxai.io.concepts import ConceptSet, import_concept_set, list_concept_sets, save_concept_set
from attnxai.io.datasets import (MB, load_dataset, load_image, load_image_dataset,
                                 load_text_dataset, read_zip_member, safe_zip_members)

ROOT = Path(__file__).resolve().parents[1]
BEACON = "![x](http://127.0.0.1:9/beacon.png)"
DEEP_JSON = "[" * 200_000 + "]" * 200_000


def png_bytes(size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def rendered_html(markdown: str) -> str:
    """What a CommonMark renderer makes of ``markdown`` (Streamlit's renderer is CommonMark)."""
    markdown_it = pytest.importorskip("markdown_it")
    return markdown_it.MarkdownIt("commonmark").render(markdown)


# -- 1. Markdown injection -----------------------------------------------------------------------
@pytest.mark.parametrize("text", [BEACON, "<img src=x onerror=alert(1)>", "$\\frac{a}{b}$",
                                  "[click](javascript:alert(1))", "<http://evil.example/x.png>",
                                  ":red[alarm] :material/error:", "title\n===", "&lt;b&gt;"])
def test_esc_leaves_no_markdown_link_image_html_or_math(text):
    from ui.common import esc

    html = rendered_html(esc(text))
    assert "<img" not in html and "<a " not in html and "<h1" not in html
    assert "\\$" in esc("$x$") and "\\:" in esc(":red[x]")  # Streamlit's own math/directives


def test_markdown_in_a_csv_header_is_shown_escaped(env):
    """A CSV header holding image syntax reaches the page only escaped: the browser would
    otherwise fetch the URL when the error is shown."""
    at = _app().run()
    at.radio(key="w_data_source").set_value("Upload a file").run()
    data = f"{BEACON},other\nsome text,more text\nsecond row,again\n".encode()
    at.file_uploader(key="w_data_upload").set_value(("beacon.csv", data, "text/csv"))
    at.run()
    assert not at.exception and not at.error
    # Two text-like columns and no `text`: the page asks which holds the texts. The hostile
    # header is an option of a select box (plain text, never Markdown) ...
    assert at.selectbox(key="w_data_text_column").options == [BEACON, "other"]
    # ... and what the page writes in Markdown about the file is escaped.
    shown = [w.value for w in at.warning] + [c.value for c in at.caption]
    assert any("pick the one that does" in body for body in shown)
    for body in shown:
        assert "<img" not in rendered_html(body) and "<a " not in rendered_html(body)


def test_a_failed_audit_error_is_shown_escaped(env):
    from ui.jobs import AuditJob

    at = _app()
    at.session_state["audit_job"] = AuditJob(config=None, description="demo", status="failed",
                                             error=f"bad column {BEACON}", announced=True)
    at.switch_page("views/run.py").run()
    bodies = [e.value for e in at.error if "The audit failed" in e.value]
    assert bodies and all("![" not in b and "<img" not in rendered_html(b) for b in bodies)


# -- 2. Zip datasets are checked before they are read -------------------------------------------
def zero_bomb(path: Path, members: int = 50, size: int = 19 * MB, suffix: str = ".png") -> Path:
    """A ~1 MB zip of ``members`` members of ``size`` zero bytes each, deflated."""
    zeros = bytes(size)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(members):
            zf.writestr(f"img{i:02d}{suffix}", zeros)
    return path


def refused_within(fn, error: type[Exception], match: str) -> tuple[float, int]:
    """Run ``fn`` (which must raise ``error``); its wall time and peak traced allocation."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(error, match=match):
            fn()
        return time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_zip_bomb_dataset_is_refused_quickly_without_reading_members(tmp_path):
    bomb = zero_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 2 * MB
    seconds, peak = refused_within(lambda: load_dataset(bomb), DataError,
                                   r"bomb\.zip: img00\.png would unpack from .* KB to 19\.0 MB.*"
                                   r"possible zip bomb")
    assert seconds < 5 and peak < 10 * MB, (seconds, peak)


def test_zip_bomb_concept_set_is_refused_quickly_without_reading_members(tmp_path):
    bomb = zero_bomb(tmp_path / "bomb.zip")
    seconds, peak = refused_within(lambda: import_concept_set(bomb, tmp_path / "root"),
                                   ConceptSetError, r"^bomb\.zip: img00\.png is larger than "
                                                    r"the 10\.0 MB limit: it unpacks to 19\.0 MB")
    assert seconds < 5 and peak < 10 * MB, (seconds, peak)
    assert not (tmp_path / "root").exists()


def test_oversized_zip_member_is_reported_with_its_declared_size(tmp_path):
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("ok.png", png_bytes())
        zf.writestr("big.png", os.urandom(3 * MB))
    with pytest.raises(DataError, match=r"^big\.png is 3\.0 MB, over the 1 MB per-image limit"):
        load_image_dataset(path, max_image_bytes=1 * MB)
    ds = load_image_dataset(path, max_image_bytes=1 * MB, skip_invalid=True)
    assert len(ds) == 1 and ds.skipped == ["big.png"]


def test_oversized_concept_zip_member_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(concepts_mod, "MAX_IMAGE_BYTES", 100)
    monkeypatch.setattr(datasets_mod, "read_zip_member", _never_read)
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("s/concept.json", "{}")
        zf.writestr("s/examples/0000.png", b"\0" * 500)
    with pytest.raises(ConceptSetError, match=r"s/examples/0000\.png is larger than the 100 "
                                              r"bytes limit: it unpacks to 500 bytes"):
        import_concept_set(path, tmp_path / "root")


def _never_read(*args, **kwargs):
    raise AssertionError("a member was decompressed before the directory was checked")


def test_zip_member_count_and_bounded_reads(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(5):
            zf.writestr(f"{i}.png", bytes(2000))
    with zipfile.ZipFile(path) as zf:
        with pytest.raises(DataError, match=r"many\.zip holds more than 4 files"):
            safe_zip_members(zf, 10 * MB, "many.zip", max_members=4)
        # A read never returns more than its bound, whatever the member's size.
        assert len(read_zip_member(zf, zf.infolist()[0], 100)) == 101


# -- 3. One sentence and exit 2, not a traceback -----------------------------------------------
def test_deeply_nested_jsonl_is_a_data_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"text": "fine"}\n' + DEEP_JSON + "\n")
    with pytest.raises(DataError, match=r"deep\.jsonl: line 2 nests JSON .* too deeply"):
        load_text_dataset(path)
    path.write_text('{"text": "x", "label": ' + "9" * 5000 + "}\n")
    with pytest.raises(DataError, match=r"deep\.jsonl: line 1 is not valid JSON"):
        load_text_dataset(path)


def test_one_deeply_nested_manifest_does_not_break_listing(tmp_path, capsys):
    save_concept_set(ConceptSet(name="pool", modality="text", kind="random_pool",
                                examples=[f"random text {i}" for i in range(100)]), tmp_path)
    (tmp_path / "deep").mkdir()
    (tmp_path / "deep" / "concept.json").write_text(DEEP_JSON)
    infos = {i.name: i for i in list_concept_sets(tmp_path)}
    assert infos["pool"].error is None and infos["pool"].n_examples == 100
    assert "too deeply" in infos["deep"].error
    assert main(["concepts", "list", "--concept-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "pool" in out and "deep" in out and "BROKEN" in out


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5"])
def test_out_of_range_seed_exits_2_before_the_model_loads(seed, monkeypatch, capsys):
    import attnxai.models

    monkeypatch.setattr(attnxai.models, "load_model", _never_read)
    with pytest.raises(SystemExit) as exit_:
        main(["audit", "--model", "builtin:minilm-zeroshot", "--target", "sports",
              "--concepts", "sports-words", f"--seed={seed}"])
    assert exit_.value.code == 2
    assert "argument --seed: must be" in capsys.readouterr().err


def test_largest_seed_is_accepted():
    from attnxai.cli.main import build_parser

    args = build_parser().parse_args(["audit", "--model", "m", "--target", "t", "--concepts",
                                      "c", "--seed", str(2**32 - 1)])
    assert args.seed == 2**32 - 1


def test_batch_size_zero_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--model", "builtin:minilm-zeroshot", "--text", "x", "--batch-size", "0"])
    assert exit_.value.code == 2
    assert "argument --batch-size: must be at least 1, not 0" in capsys.readouterr().err


def test_corrupt_safetensors_in_a_hf_folder_is_a_model_load_error(tiny_bert_dir, tmp_path, capsys):
    import shutil

    from attnxai.models import load_model

    folder = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    with pytest.raises(ModelLoadError, match=r"Could not load .*bert"):
        load_model(str(folder))
    assert main(["info", "--model", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "attnxai: error: Could not load" in err and "Traceback" not in err


def test_image_over_pillows_limit_is_called_too_large(tmp_path, monkeypatch):
    """Pillow refuses images far over its limit while opening them; that is "too large",
    not "corrupt or truncated"."""
    path = tmp_path / "huge.png"
    path.write_bytes(png_bytes((32, 32)))
    monkeypatch.setattr(datasets_mod, "MAX_IMAGE_PIXELS", 10)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow raises over 2x this
    with pytest.raises(DataError, match=r"^huge\.png is too large \(1,024 pixels, limit 10 "
                                        r"pixels\); use a smaller image\.$"):
        load_image(path)


def test_unexpected_exception_is_one_sentence_and_exit_1(monkeypatch, capsys):
    import attnxai.cli.store as cli_store

    def boom(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli_store, "cmd_runs", boom)
    monkeypatch.delenv("ATTNXAI_DEBUG", raising=False)
    assert main(["runs"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "internal error (RuntimeError: boom second line); this is a bug" in err
    assert "please report it" in err
    monkeypatch.setenv("ATTNXAI_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main(["runs"])


# -- 4. Locks ----------------------------------------------------------------------------------
def test_garbage_file_at_a_path_with_lock_in_it_is_refused_at_once(tmp_path):
    path = tmp_path / "lockfile" / "lock.duckdb"
    path.parent.mkdir()
    path.write_bytes(b"this is not a database, it only has lock in its name\n" * 100)
    t0 = time.monotonic()
    with pytest.raises(StoreError, match=r"lock\.duckdb is not an attnxai audit store \(it is not a DuckDB") as info:
        Store(path, lock_timeout=30).list_runs()
    assert not isinstance(info.value, StoreLockedError)
    assert time.monotonic() - t0 < 5


def test_lock_is_recognised_by_duckdbs_message_not_the_path():
    held = duckdb.IOException('IO Error: Could not set lock on file "/data/a.duckdb": '
                              "Conflicting lock is held in /usr/bin/python3 (PID 42)")
    garbage = duckdb.IOException('IO Error: The file "/tmp/lock/lock.duckdb" exists, but it is '
                                 "not a valid DuckDB database file!")
    assert _is_lock_error(held) and not _is_lock_error(garbage)
    assert not _is_lock_error(ValueError('Could not set lock on file "x"'))


def test_real_lock_at_a_path_with_lock_in_it_still_waits(tmp_path):
    db = tmp_path / "lock" / "lock.duckdb"
    db.parent.mkdir()
    Store(db).schema_version()
    hold = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', "
            "flush=True); time.sleep(3)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLockedError, match="in use by another process"):
            Store(db, lock_timeout=0.3).list_runs()
    finally:
        holder.wait(timeout=30)


# -- 5. Binding to localhost ---------------------------------------------------------------------
@pytest.mark.parametrize("address", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.1.1"])
def test_loopback_addresses_need_no_warning(address):
    from ui.common import bind_warning

    assert bind_warning(address) is None


@pytest.mark.parametrize("address, where", [(None, "all network interfaces"),
                                            ("", "all network interfaces"),
                                            ("0.0.0.0", "0\\.0\\.0\\.0"),
                                            ("192.168.1.5", "192\\.168\\.1\\.5"),
                                            ("myhost", "myhost")])
def test_other_addresses_warn_with_how_to_bind_locally(address, where):
    from ui.common import bind_warning

    message = bind_warning(address)
    assert message and where in message and "--server.address 127.0.0.1" in message
    assert "ATTNXAI_ALLOW_REMOTE=1" in message
    assert bind_warning(address, allow_remote=True) is None


def test_dashboard_warns_when_bound_to_every_interface(env, monkeypatch):
    from streamlit import config

    old = config.get_option("server.address")
    try:
        config.set_option("server.address", "0.0.0.0")
        at = _app().run()
        assert any("other machines can reach it" in w.value for w in at.warning)
        monkeypatch.setenv("ATTNXAI_ALLOW_REMOTE", "1")
        at.run()
        assert not any("other machines can reach it" in w.value for w in at.warning)
    finally:
        config.set_option("server.address", old)
    at = _app().run()
    assert not any("other machines can reach it" in w.value for w in at.warning)


def test_make_run_binds_to_localhost():
    run = [l for l in (ROOT / "Makefile").read_text().splitlines() if "streamlit run" in l]
    assert run and all("--server.address 127.0.0.1" in l for l in run)


# -- 6. A failed upload removes only what it created ---------------------------------------------
def test_failed_upload_keeps_an_earlier_upload_of_the_same_bytes(tmp_path, monkeypatch):
    from ui.common import use_uploaded_dataset

    monkeypatch.setenv("ATTNXAI_HOME", str(tmp_path))
    data = b"text,label\n" + b"".join(b"row %d,a\n" % i for i in range(4))
    good = Path(use_uploaded_dataset("good.csv", data).source)
    with pytest.raises(DataError, match=r"same\.jsonl: line 1 is not valid JSON"):
        use_uploaded_dataset("same.jsonl", data)  # the same bytes, read as JSONL: refused
    assert good.is_file() and load_dataset(good).items[0] == "row 0"
    assert sorted(p.name for p in good.parent.iterdir()) == ["good.csv"]
    # A failed upload of new bytes leaves no file and no folder behind.
    with pytest.raises(DataError):
        use_uploaded_dataset("other.jsonl", b"{broken\n")
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == [good.parent.name]


# -- 7. Cosmetic: duration of a dead run -----------------------------------------------------------
def test_run_of_a_dead_process_has_an_unknown_duration(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    db = tmp_path / "a.duckdb"
    Store(db).schema_version()
    con = duckdb.connect(str(db))  # a run left 'running' by a process that no longer exists
    con.execute("INSERT INTO runs (run_id, created, status, model, datasets, targets, concepts, "
                "config, pid, host) VALUES ('r1', now()::TIMESTAMP, 'running', 'm', '[]', "
                "'[\"t\"]', '[]', '{}', ?, ?)", [dead.pid, socket.gethostname()])
    con.close()
    run = Store(db).list_runs().iloc[0]
    assert run.status == "failed" and "ended without finishing" in run.error
    assert pd.isna(run.duration_s)
    assert main(["runs", "--db", str(db)]) == 0
    assert " 0.0" not in capsys.readouterr().out


# -- 8. The activation cache's cap and `attnxai cache` --------------------------------------------
ENTRY = torch.zeros(10, 4)  # 160 bytes of float32
ENTRY_BYTES = 160


def fill(store: Store, model: str, names: list[str]) -> None:
    """One cache insert per name, in order, so each is newer than the one before."""
    for name in names:
        store.cache_activations(model, {(name, 0): ENTRY})
        time.sleep(0.002)


def cached(store: Store, model: str, names: list[str]) -> list[str]:
    return sorted(h for h, _ in store.cached_activations(model, names, [0]))


def test_cache_evicts_the_oldest_entries_over_its_cap(tmp_path):
    store = Store(tmp_path / "a.duckdb", cache_max_bytes=3 * ENTRY_BYTES)
    names = ["e0", "e1", "e2", "e3", "e4"]
    fill(store, "m1", names[:2])
    fill(store, "m2", names[2:])
    assert cached(store, "m1", names) == [] and cached(store, "m2", names) == ["e2", "e3", "e4"]
    assert store.cache_info()["bytes"].sum() == 3 * ENTRY_BYTES
    # A batch larger than the cap keeps its newest part only (ties are broken by key).
    store.cache_activations("m3", {(f"b{i}", 0): ENTRY for i in range(5)})
    assert store.cache_info()["entries"].sum() == 3
    assert cached(store, "m2", names) == []


def test_cache_cap_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_MAX_BYTES_ENV, str(ENTRY_BYTES))
    store = Store(tmp_path / "a.duckdb")
    assert store.cache_max_bytes == ENTRY_BYTES
    fill(store, "m", ["old", "new"])
    assert cached(store, "m", ["old", "new"]) == ["new"]
    monkeypatch.setenv(CACHE_MAX_BYTES_ENV, "2GB")
    with pytest.raises(StoreError, match=rf"{CACHE_MAX_BYTES_ENV} must be a whole number"):
        Store(tmp_path / "a.duckdb")
    monkeypatch.delenv(CACHE_MAX_BYTES_ENV)
    assert Store(tmp_path / "a.duckdb").cache_max_bytes == 2 * 1024**3


def test_cache_cli_info_and_clear(tmp_path, capsys):
    db = str(tmp_path / "a.duckdb")
    store = Store(db)
    store.record_model("a" * 64, "builtin:minilm-zeroshot", "text", 6, ["x"], {})
    fill(store, "a" * 64, ["e0", "e1"])
    fill(store, "b" * 64, ["e0"])
    assert main(["cache", "info", "--db", db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{'a' * 64}  builtin:minilm-zeroshot: 2 entries, 2 examples, 320 bytes"
    assert out[1] == f"{'b' * 64}  (model not recorded): 1 entry, 1 example, 160 bytes"
    assert out[2] == f"total 480 bytes (cap 2.0 GB, ${CACHE_MAX_BYTES_ENV})"
    assert main(["cache", "clear", "--db", db, "--model", "aaaa"]) == 0
    assert "removed 2 cached entries" in capsys.readouterr().err
    assert list(store.cache_info()["model_hash"]) == ["b" * 64]
    assert main(["cache", "clear", "--db", db, "--model", "cccc"]) == 2
    assert "matches no cached model" in capsys.readouterr().err
    assert main(["cache", "clear", "--db", db]) == 0
    assert main(["cache", "info", "--db", db]) == 0
    assert "the activation cache is empty" in capsys.readouterr().err


# -- AppTest helpers (as in test_dashboard.py) ----------------------------------------------------
@pytest.fixture()
def env(tmp_path, monkeypatch):
    """A fresh home and a concept folder holding trimmed copies of the shipped text sets."""
    from attnxai.io.concepts import load_concept_set

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
    return AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180)

"""Regression tests of issue 23: output paths, database files and exit codes under hostile input.

Each case once lost data, touched the system or was called an internal bug:
1. an output path equal to the audit store (or its write-ahead log, a hard link or a symlink to
   it, or an input of the command) is refused before any work, and the store stays
   byte-identical;
2. special files (FIFOs, devices, links to them) are never replaced;
3. a foreign file as ``--db`` is refused by its header, and no DuckDB connection of attnxai can
   fetch or load an extension;
4. unwritable output folders are a user error (exit 2), found before the audit runs;
5. a truncated store is a user error;
6. ``ATTNXAI_HOME`` naming a file or an impossible folder is a user error;
7. ``audit --csv <folder>`` is refused before the run;
8. an unknown ``model_type`` is one sentence;
9. ``runs --db <folder>`` is an error, not "no audit runs yet";
10. exported CSV cells that a spreadsheet would run as formulas are neutralised.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from attnxai.audit.report import detail_csv_bytes, detail_frame, summary_csv_bytes
from attnxai.audit.store import CONNECTION_CONFIG, Store
from attnxai.cli.main import main
from attnxai.io.concepts import ConceptSet, save_concept_set
from attnxai.io.outputs import OutputError, check_output, neutralise_formulas

from conftest import VOCAB

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]
SPORTS = "team won lost match game cup final goal player".split()
#: Dataset texts a spreadsheet would run (OWASP's examples), and harmless ones.
HOSTILE = ['=cmd|"/C calc"!A0', "@SUM(A1) team won", "+1+1 match", "-2+3 game",
           "\tteam", "\rgoal"]
SMALL = ["--num-cavs", "3", "--num-random", "2", "--num-null", "20", "--layers", "1,2",
         "--device", "cpu"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_dir):
    """Concept sets, a labelled dataset holding formula-like texts, and one stored audit run."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("outputs")

    def sent(words: list[str]) -> str:
        return " ".join(rng.choice(words, int(rng.integers(4, 8))))

    concepts = root / "concepts"
    save_concept_set(ConceptSet("pool", "text", [sent(WORDS) for _ in range(100)],
                                kind="random_pool"), concepts)
    save_concept_set(ConceptSet("sports", "text", [sent(SPORTS) for _ in range(12)],
                                default_pool="pool"), concepts)
    data = root / "data.csv"
    texts = HOSTILE + [sent(WORDS) for _ in range(8)]
    pd.DataFrame({"text": texts, "label": ["positive"] * len(texts)}).to_csv(data, index=False)
    db = root / "audits.duckdb"
    args = audit_args(tiny_bert_dir, data, concepts)
    assert main([*args, "--db", str(db)]) == 0
    run_id = Store(db).list_runs().run_id.iloc[0]
    return {"root": root, "concepts": concepts, "data": data, "db": db, "run_id": run_id,
            "args": args, "texts": texts}


def audit_args(model: Path, data: Path, concepts: Path) -> list[str]:
    return ["audit", "--model", str(model), "--data", str(data), "--target", "positive",
            "--concepts", "sports", "--concept-dir", str(concepts), *SMALL]


def run_count(db: Path) -> int:
    return len(Store(db).list_runs())


def exits_2(argv: list[str], capsys, *words: str) -> str:
    """Run the CLI; assert exit 2 and one line of error naming ``words``; the message."""
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("attnxai: error: ") and "internal error" not in err, err
    assert len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err
    return err


# -- 1. Never the store itself ------------------------------------------------------------------
def test_audit_csv_at_the_store_is_refused_before_the_run(world, capsys):
    db, before = world["db"], digest(world["db"])
    n = run_count(db)
    exits_2([*world["args"], "--db", db, "--csv", db], capsys, "the audit database")
    assert digest(db) == before and run_count(db) == n


@pytest.mark.parametrize("command", ["export", "report"])
def test_export_and_report_at_the_store_are_refused(world, capsys, command):
    db, before = world["db"], digest(world["db"])
    flag = "--out" if command == "export" else "--html"
    exits_2([command, world["run_id"], "--db", db, flag, db], capsys, "the audit database")
    assert digest(db) == before
    # The same file by another name: a symlink, a hard link, a path through "..", the WAL.
    link, hard = world["root"] / "link.duckdb", world["root"] / "hard.duckdb"
    link.unlink(missing_ok=True)
    hard.unlink(missing_ok=True)
    link.symlink_to(db)
    os.link(db, hard)
    try:
        for other in (link, hard, db.parent / ".." / db.parent.name / db.name):
            exits_2([command, world["run_id"], "--db", db, flag, other], capsys,
                    "the audit database")
        exits_2([command, world["run_id"], "--db", db, flag, f"{db}.wal"], capsys,
                "write-ahead log")
        assert digest(db) == before and link.is_symlink() and not Path(f"{db}.wal").exists()
    finally:
        link.unlink()
        hard.unlink()


def test_detail_and_effects_files_are_checked_too(world, capsys):
    """`--out X.csv --detail` writes X.detail.csv: that one may not be the store either."""
    db = world["root"] / "x.detail.csv"
    shutil.copy(world["db"], db)
    before = digest(db)
    out = world["root"] / "x.csv"
    exits_2(["export", world["run_id"], "--db", db, "--out", out, "--detail"], capsys,
            "the audit database")
    assert digest(db) == before and not out.exists()


def test_audit_csv_at_its_own_dataset_is_refused(world, capsys):
    before = digest(world["data"])
    exits_2([*world["args"], "--csv", world["data"]], capsys, "an input of this command")
    assert digest(world["data"]) == before


# -- 2. Special files are never replaced ----------------------------------------------------------
def test_fifo_and_links_to_special_files_are_not_replaced(world, capsys, tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    link = tmp_path / "null.csv"
    link.symlink_to("/dev/null")
    for target in (fifo, link):
        exits_2(["export", world["run_id"], "--db", world["db"], "--out", target, "--detail"],
                capsys, "not a regular file")
        exits_2(["report", world["run_id"], "--db", world["db"], "--html", target], capsys,
                "not a regular file")
    assert stat.S_ISFIFO(fifo.stat().st_mode) and link.is_symlink()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null.csv", "pipe.csv"]


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_devices_are_refused_by_the_check_itself(device):
    """Checked without writing, so that a broken check cannot harm the machine."""
    with pytest.raises(OutputError, match="character device"):
        check_output(device)


def test_a_special_file_appearing_before_the_rename_is_not_replaced(tmp_path, monkeypatch):
    from attnxai.io import outputs

    target = tmp_path / "out.csv"
    real = outputs._refuse_special
    calls = []

    def fifo_appears(path, example):
        calls.append(path)
        if len(calls) == 2:  # after the data is written, before the rename
            os.mkfifo(target)
        return real(path, example)

    monkeypatch.setattr(outputs, "_refuse_special", fifo_appears)
    with pytest.raises(OutputError, match="FIFO"):
        outputs.write_atomic(target, b"a,b\n")
    assert stat.S_ISFIFO(target.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left


# -- 3. Foreign files as --db; no extension is ever fetched or loaded -----------------------------
def foreign_files(folder: Path) -> dict[str, Path]:
    sqlite = folder / "file.sqlite"
    con = sqlite3.connect(sqlite)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    con.close()
    parquet = folder / "file.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(parquet)
    text = folder / "notes.txt"
    text.write_text("not a database\n")
    return {"a SQLite database": sqlite, "not a DuckDB database file": parquet,
            "not a DuckDB": text}


@pytest.mark.parametrize("command", [["runs"], ["cache", "info"], ["cache", "clear"]])
def test_foreign_files_as_db_are_refused_by_their_header(tmp_path, capsys, command):
    for why, path in foreign_files(tmp_path).items():
        before = digest(path)
        err = exits_2([*command, "--db", path], capsys, "not an attnxai audit store", why)
        assert "download" not in err.lower() and "http" not in err.lower()
        assert digest(path) == before


def test_no_connection_can_install_or_load_an_extension(tmp_path):
    store = Store(tmp_path / "a.duckdb")
    with store._connect() as con:
        settings = {k: con.execute(f"SELECT current_setting('{k}')").fetchone()[0]
                    for k in CONNECTION_CONFIG}
        loaded = con.execute("SELECT extension_name FROM duckdb_extensions() "
                             "WHERE loaded AND NOT installed_from = 'statically_linked' "
                             "AND installed_from <> ''").fetchall()
    assert settings == {k: False for k in CONNECTION_CONFIG}
    assert loaded == []
    # Given a SQLite file past the header check, DuckDB with these settings asks for the
    # extension instead of fetching it (its default downloads it over HTTP).
    path = foreign_files(tmp_path)["a SQLite database"]
    with pytest.raises(duckdb.Error) as info:
        duckdb.connect(str(path), config=CONNECTION_CONFIG)
    assert "download" not in str(info.value).lower()


# -- 4 and 7. Unwritable or wrong output paths, found before any work ------------------------------
@pytest.mark.parametrize("out", ["/proc/x.csv", "/sys/x.csv"])
def test_unwritable_folders_are_user_errors(world, capsys, out):
    exits_2(["export", world["run_id"], "--db", world["db"], "--out", out], capsys,
            "Cannot write")
    exits_2(["report", world["run_id"], "--db", world["db"], "--html",
             out.replace(".csv", ".html")], capsys, "Cannot write")


@pytest.mark.parametrize("csv_out", ["/sys/x.csv", "folder", "missing/x.csv"])
def test_audit_output_problems_are_found_before_the_run(world, capsys, tmp_path, csv_out):
    db = tmp_path / "a.duckdb"
    (tmp_path / "folder").mkdir()
    out = csv_out if csv_out.startswith("/") else tmp_path / csv_out
    exits_2([*world["args"], "--db", db, "--csv", out, "--detail"], capsys)
    assert not db.exists() or run_count(db) == 0


# -- 5. A truncated store --------------------------------------------------------------------------
def test_truncated_store_is_a_user_error(world, capsys, tmp_path):
    cut = tmp_path / "cut.duckdb"
    data = world["db"].read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    exits_2(["runs", "--db", cut], capsys, "truncated or damaged")
    exits_2(["export", world["run_id"], "--db", cut, "--out", tmp_path / "x.csv"], capsys,
            "truncated or damaged")


# -- 6 and 9. ATTNXAI_HOME and --db that cannot hold a store ---------------------------------------
def test_home_that_is_a_file_is_a_user_error(world, capsys, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.write_text("a file")
    monkeypatch.setenv("ATTNXAI_HOME", str(home))
    exits_2(["runs"], capsys, str(home), "not a folder")
    exits_2([*world["args"], "--db"], capsys, str(home), "not a folder")


def test_home_that_cannot_be_created_is_a_user_error(world, capsys, monkeypatch):
    monkeypatch.setenv("ATTNXAI_HOME", "/proc/attnxai-home")
    exits_2([*world["args"], "--db"], capsys, "ATTNXAI_HOME")


def test_runs_with_a_folder_as_db_is_an_error(capsys, tmp_path):
    exits_2(["runs", "--db", tmp_path], capsys, "is a folder")
    exits_2(["runs", "--db", "/dev/null"], capsys, "not a regular file")


# -- 8. An unknown model type ----------------------------------------------------------------------
def test_unknown_model_type_is_one_sentence(tiny_bert_dir, capsys, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "bert-from-2031"}))
    err = exits_2(["info", "--model", folder], capsys, "'bert-from-2031'", "does not know")
    assert "pip install" not in err


# -- 10. Formula injection -------------------------------------------------------------------------
def test_exported_csvs_neutralise_formulas(world, tmp_path):
    out = tmp_path / "audit.csv"
    assert main(["export", world["run_id"], "--db", str(world["db"]), "--out", str(out),
                 "--detail"]) == 0
    detail = (tmp_path / "audit.detail.csv").read_bytes()
    store = Store(world["db"])
    assert detail == detail_csv_bytes(store, world["run_id"])  # the dashboard serves the same
    assert out.read_bytes() == summary_csv_bytes(store, world["run_id"])
    raw = detail_frame(store, run_id := world["run_id"])["input"].tolist()
    assert sum(v.startswith(("=", "+", "-", "@")) for v in raw) >= 4  # the hostile texts
    cells = [row["input"] for row in csv.DictReader(io.StringIO(detail.decode()))]
    assert cells == ["'" + v if v.startswith(("=", "+", "-", "@")) else v for v in raw], run_id
    for row in csv.reader(io.StringIO(detail.decode())):
        assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row)


def test_neutralising_keeps_numbers_and_harmless_text():
    frame = pd.DataFrame({"x": [-0.5, 1.0], "n": [-3, 4], "t": ["-1 bad", "fine - ok"],
                          "w": ["\tcmd", "\r=1"],
                          "s": pd.array(["=A1", None], dtype="string")})
    out = neutralise_formulas(frame)
    assert out["x"].tolist() == [-0.5, 1.0] and out["n"].tolist() == [-3, 4]
    assert out["t"].tolist() == ["'-1 bad", "fine - ok"]
    assert out["w"].tolist() == ["'\tcmd", "'\r=1"]
    assert out["s"].tolist()[0] == "'=A1" and pd.isna(out["s"].tolist()[1])

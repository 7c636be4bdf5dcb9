"""`attnxai explain`, `attnxai evaluate` and `attnxai bench shapley` on tiny models: output,
JSON, CSV, and clear messages with exit code 2 for user errors."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import attnxai
from attnxai.bench import shapley as bench_shapley
from attnxai.cli import bench as cli_bench
from attnxai.explain.baselines import METHODS
from attnxai.cli.main import build_parser, main
from attnxai.explain.shapley import aggregate_attention
from conftest import LABELS, TEXTS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def timm_spec(tiny_timm_ckpt) -> str:
    return f"timm:vit_tiny_patch16_224@{tiny_timm_ckpt}"


@pytest.fixture(scope="module")
def text_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "texts.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i, t in enumerate(TEXTS):
            w.writerow([t, LABELS[i % 3]])
    return path


def test_explain_text_json(capsys, tiny_bert_dir):
    code, out, _ = run(capsys, "explain", "--model", str(tiny_bert_dir), "--text", TEXTS[0],
                       "--game", "mutual", "--top", "0", "--json", "--device", "cpu")
    assert code == 0
    doc = json.loads(out)
    assert doc["method"] == "attention-shapley" and doc["options"] == {"game": "mutual"}
    assert doc["prediction"] in LABELS and 0 < doc["probability"] <= 1
    assert sorted(p["player"] for p in doc["players"]) == sorted(TEXTS[0].split())
    # Efficiency: the values add up to v(N) of the mutual game on the captured attention.
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    M = aggregate_attention(adapter.capture([TEXTS[0]], grads=False)).matrix[0]
    assert doc["sum"] == pytest.approx(float(torch.triu(M + M.T, diagonal=1).sum()), abs=1e-9)


def test_explain_text_table_and_top(capsys, tiny_bert_dir):
    code, out, _ = run(capsys, "explain", "--model", str(tiny_bert_dir), "--text", TEXTS[2],
                       "--method", "grad-sam", "--top", "3", "--device", "cpu")
    assert code == 0
    assert "method: grad-sam" in out and "prediction:" in out
    rows = [line for line in out.splitlines() if line.startswith(" ") and line.strip()[:1].isdigit()]
    assert len(rows) == 3
    values = [float(r.split()[-1]) for r in rows]
    assert values == sorted(values, reverse=True)


def test_explain_image(capsys, timm_spec, images):
    code, out, _ = run(capsys, "explain", "--model", timm_spec, "--image", str(images[0]),
                       "--method", "raw-attention", "--json", "--top", "0")
    assert code == 0
    doc = json.loads(out)
    assert doc["num_players"] == 16 and len(doc["players"]) == 16  # 32x32 px, 8x8 patches
    assert {(p["row"], p["col"]) for p in doc["players"]} == {(r, c) for r in range(4)
                                                               for c in range(4)}


def test_evaluate_table_csv_and_json(capsys, tiny_bert_dir, text_csv, tmp_path):
    out_csv = tmp_path / "scores.csv"
    code, out, _ = run(capsys, "evaluate", "--model", str(tiny_bert_dir), "--data", str(text_csv),
                       "--methods", "attention-shapley", "rollout", "--limit", "4",
                       "--csv", str(out_csv), "--device", "cpu")
    assert code == 0
    assert "comprehensiveness" in out and "F1@20" in out and "4 inputs" in out
    assert "attention-shapley" in out and "rollout" in out
    rows = list(csv.DictReader(open(out_csv)))
    assert [r["method"] for r in rows] == ["attention-shapley", "rollout"]
    assert float(rows[0]["seconds_per_input"]) > 0
    code, out, _ = run(capsys, "evaluate", "--model", str(tiny_bert_dir), "--data", str(text_csv),
                       "--methods", "attention-shapley", "--game", "cls", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["n_inputs"] == len(TEXTS)
    assert doc["options"] == {"attention-shapley": {"game": "cls"}}
    assert 0 <= doc["results"][0]["f1_at_20"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["explain", "--model", "no/such-model", "--text", "hi"], "never downloads"),
    (["explain", "--model", "builtin:nothing", "--text", "hi"], "Unknown built-in model"),
    (["explain", "--model", "BERT", "--text", "   "], "text to explain is empty"),
    (["explain", "--model", "BERT", "--text", "hi", "--method", "lime"], "Unknown method 'lime'"),
    (["explain", "--model", "BERT", "--text", "hi", "--method", "rollout", "--game", "mutual"],
     "does not take game"),
    (["explain", "--model", "BERT", "--text", "hi", "--game", "sum"], "Unknown game 'sum'"),
    (["explain", "--model", "BERT", "--text", "hi", "--layers", "7"], "layer 7 does not exist"),
    (["explain", "--model", "BERT", "--text", "hi", "--target", "maybe"], "Unknown class 'maybe'"),
    (["explain", "--model", "BERT", "--image", "x.png"], "is a text model; pass --text"),
    (["explain", "--model", "TIMM", "--image", "BROKEN"], "not an image file"),
    (["explain", "--model", "TIMM", "--image", "/no/such.png"], "image file not found"),
    (["evaluate", "--model", "BERT", "--data", "demo", "--methods", "lime"], "Unknown method"),
    (["evaluate", "--model", "BERT", "--data", "/no/such.csv"], "dataset not found"),
    (["evaluate", "--model", "BERT", "--data", "CSV", "--methods", "rollout", "--game", "cls"],
     "--game does not apply"),
    (["evaluate", "--model", "BERT", "--data", "CSV", "--methods", "integrated-gradients",
      "--steps", "0"], "--steps must be at least 1"),
    (["evaluate", "--model", "BERT", "--data", "CSV", "--csv", "/no/such/dir/out.csv"],
     "does not exist"),
])
def test_user_errors_exit_2(capsys, tiny_bert_dir, timm_spec, text_csv, tmp_path, argv, message):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a png")
    subst = {"BERT": str(tiny_bert_dir), "TIMM": timm_spec, "BROKEN": str(broken),
             "CSV": str(text_csv)}
    code, out, err = run(capsys, *[subst.get(a, a) for a in argv], "--device", "cpu")
    assert code == 2, (out, err)
    assert err.startswith("attnxai: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_parser_has_the_commands_and_lists_every_method():
    parser = build_parser()
    assert parser.parse_args(["bench", "shapley"]).func is cli_bench.cmd_bench_shapley
    help_text = parser._subparsers._group_actions[0].choices["explain"].format_help()
    for name in METHODS:
        assert name in help_text


def test_bench_helpers_on_small_sizes(tiny_bert_dir):
    enum = bench_shapley.bench_enumeration(sizes=(6,))
    assert enum[0]["max_abs_diff"] < 1e-9 and enum[0]["enumeration_over_closed_form"] > 0
    samp = bench_shapley.bench_sampling(n=6, perms=(10, 200))
    assert samp[1]["mean_stderr"] < samp[0]["mean_stderr"]
    adapter = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    share = bench_shapley.bench_share(adapter, TEXTS[:2], repeats=1)
    assert share["players"] == 6 and share["closed_form_share"] > 0

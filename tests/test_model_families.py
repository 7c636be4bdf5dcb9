"""Model families: decoder-only sequence classifiers (GPT-2, Llama, Qwen2) load from folders
whose tokenizer has no padding token, pad on the right with the end-of-sequence token, and are
read at their last non-padding token everywhere attention is read; families without token ×
token attention are refused in one sentence. Tiny models built from configs, loaded through the
real local-path code."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

import pytest
import torch

import attnxai
from attnxai.errors import ModelLoadError, UserInputError
from attnxai.explain.baselines import explain
from attnxai.models.readouts import readout_weights
from attnxai.tcav.scores import token_weights

WORDS = "<unk> <s> </s> the a team won lost match market stocks rose fell rain not good bad".split()
TEXTS = ["the team won", "stocks rose not good bad the market", "rain fell"]
LABELS = {"id2label": {0: "negative", 1: "neutral", 2: "positive"},
          "label2id": {"negative": 0, "neutral": 1, "positive": 2}}


def _tokenizer():
    """A word-level fast tokenizer with BOS and EOS tokens but, as GPT-2's and Llama's, no
    padding token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


QWEN_VOCAB = 300


def _byte_level_tokenizer():
    """A byte-level BPE tokenizer trained here on the test's words: Qwen2's own tokenizer class
    (which AutoTokenizer picks for a qwen2 folder) re-reads the vocabulary byte-level."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=QWEN_VOCAB, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([" ".join(WORDS[3:])] * 50, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _decoder(kind: str):
    import transformers as tf

    common = dict(num_labels=3, **LABELS)
    if kind == "gpt2":
        return tf.GPT2ForSequenceClassification(tf.GPT2Config(
            vocab_size=len(WORDS), n_embd=32, n_layer=2, n_head=4, n_positions=64, **common))
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
                 **common)
    if kind == "llama":
        return tf.LlamaForSequenceClassification(tf.LlamaConfig(vocab_size=len(WORDS), **small))
    return tf.Qwen2ForSequenceClassification(tf.Qwen2Config(vocab_size=QWEN_VOCAB, **small))


@pytest.fixture(scope="module", params=["gpt2", "llama", "qwen2"])
def decoder(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    _save(request.param, folder)
    return attnxai.load_model(str(folder), device="cpu")


def test_decoder_only_classifier_is_read_at_its_last_token(decoder):
    assert decoder.pooling == "last"
    assert decoder.card["readout"] == "the last non-padding token"
    if decoder.card["model_type"] in ("gpt2", "llama"):  # their saved tokenizer has no pad
        assert "end-of-sequence" in decoder.card["padding"]
        assert decoder.tokenizer.pad_token == "</s>"
    batch = decoder.prepare(TEXTS)
    assert batch.token_mask.sum(1).tolist() != [batch.token_mask.shape[1]] * 3  # it padded
    recorded = decoder.forward_recording(batch)
    # The proof of the readout: the head applied to the last block at the readout token
    # reproduces the model's own logits, input by input.
    last = readout_weights(batch.token_mask, "last").argmax(1)
    assert (last == batch.token_mask.sum(1) - 1).all()  # right padding
    head = decoder.model.score(recorded.activations[-1][torch.arange(len(TEXTS)), last])
    torch.testing.assert_close(head, recorded.logits, atol=1e-5, rtol=1e-5)
    # Padding changes nothing: each text alone gives the logits it gets in the batch.
    alone = torch.cat([decoder.forward_logits(decoder.prepare([t])) for t in TEXTS])
    torch.testing.assert_close(alone, recorded.logits.detach(), atol=1e-5, rtol=1e-5)


def test_attention_is_read_from_the_last_tokens_row(decoder):
    cap = decoder.capture(TEXTS, target="positive")
    last = cap.token_mask.sum(1) - 1
    rows = torch.arange(len(TEXTS))
    for layer in range(decoder.num_layers):
        expected = cap.attentions[layer].mean(1)[rows, last] * cap.token_mask
        torch.testing.assert_close(token_weights(cap.attentions[layer], cap.token_mask, "last"),
                                   expected)
    # The raw-attention baseline (the `cls` game's row) is the last token's row, at the players.
    raw = explain(decoder, TEXTS, "raw-attention")
    full = torch.stack([a.double().mean(1) for a in cap.attentions]).mean(0)[rows, last]
    for b in range(len(TEXTS)):
        players = cap.valid_mask[b].nonzero().flatten()
        values = [r["value"] for r in raw.records(b)]
        torch.testing.assert_close(torch.tensor(values, dtype=torch.float64),
                                   full[b, players], atol=1e-6, rtol=1e-6)


def test_readout_weights_on_either_padding_side():
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    left = right.flip(1)
    assert readout_weights(right, "last").argmax(1).tolist() == [2, 3]
    assert readout_weights(left, "last").argmax(1).tolist() == [3, 3]
    assert readout_weights(right, "cls").argmax(1).tolist() == [0, 0]
    torch.testing.assert_close(readout_weights(right, "mean")[0], torch.tensor([1 / 3] * 3 + [0]))
    with pytest.raises(ValueError, match="readout"):
        readout_weights(right, "pooler")


@pytest.mark.parametrize("config, words", [
    ("SwinConfig", "windowed"), ("ConvNextConfig", "convolutional network without attention"),
    ("LevitConfig", "without one stack of attention layers")])
def test_families_without_token_attention_are_refused_in_one_sentence(config, words, tmp_path,
                                                                     capsys):
    import transformers as tf

    from attnxai.cli.main import main

    getattr(tf, config)(num_labels=3).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match=words) as info:
        attnxai.load_model(str(tmp_path))
    assert "cannot audit" in str(info.value) and "AttributeError" not in str(info.value)
    assert main(["info", "--model", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and json.loads(
        (tmp_path / "config.json").read_text())["model_type"] in err


# -- every readout, proven by the gradient -----------------------------------------------------
def _vision(kind: str, folder) -> None:
    import transformers as tf

    small = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=2, intermediate_size=64, num_labels=3, **LABELS)
    model = {
        "vit": lambda: tf.ViTForImageClassification(tf.ViTConfig(**small)),
        "deit-distilled": lambda: tf.DeiTForImageClassificationWithTeacher(tf.DeiTConfig(**small)),
        "beit": lambda: tf.BeitForImageClassification(tf.BeitConfig(**small,
                                                                     use_mean_pooling=True)),
        "dinov2": lambda: tf.Dinov2ForImageClassification(tf.Dinov2Config(**small)),
        "dinov2-registers": lambda: tf.Dinov2WithRegistersForImageClassification(
            tf.Dinov2WithRegistersConfig(**small, num_register_tokens=2)),
        "clip": lambda: tf.CLIPForImageClassification(tf.CLIPConfig(
            vision_config={k: v for k, v in small.items() if k not in ("num_labels", *LABELS)},
            num_labels=3, **LABELS)),
        "siglip": lambda: tf.SiglipForImageClassification(tf.SiglipConfig(
            vision_config={k: v for k, v in small.items() if k not in ("num_labels", *LABELS)},
            num_labels=3, **LABELS)),
    }[kind]()
    model.save_pretrained(folder)
    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)


@pytest.mark.parametrize("kind, readout, prefix", [
    ("vit", "cls", 1), ("deit-distilled", "cls+dist", 2), ("beit", "patches", 1),
    ("dinov2", "cls+patches", 1), ("dinov2-registers", "cls+patches", 3),
    ("clip", "patches", 1), ("siglip", "patches", 0)])
def test_every_vit_readout_is_where_the_gradient_reaches_the_last_block(kind, readout, prefix,
                                                                       tmp_path, images):
    torch.manual_seed(0)
    _vision(kind, tmp_path)
    adapter = attnxai.load_model(str(tmp_path), device="cpu")
    assert adapter.pooling == readout and adapter.num_prefix_tokens == prefix
    _assert_readout_is_the_gradients_support(adapter, images[:3])


def test_text_readouts_are_where_the_gradient_reaches_the_last_block(decoder, tiny_bert_dir):
    _assert_readout_is_the_gradients_support(decoder, TEXTS)
    bert = attnxai.load_model(str(tiny_bert_dir), device="cpu")
    assert bert.pooling == "cls"
    _assert_readout_is_the_gradients_support(bert, TEXTS)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_modernbert_is_read_as_its_classifier_pooling_says(pooling, tmp_path):
    import transformers as tf

    from conftest import VOCAB

    tf.ModernBertForSequenceClassification(tf.ModernBertConfig(
        vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, classifier_pooling=pooling,
        pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
        num_labels=3, **LABELS)).save_pretrained(tmp_path)
    tf.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(tmp_path)
    adapter = attnxai.load_model(str(tmp_path), device="cpu")
    assert adapter.pooling == pooling
    _assert_readout_is_the_gradients_support(adapter, ["the team won the cup", "stocks fell"])


def _assert_readout_is_the_gradients_support(adapter, inputs) -> None:
    """The head reads exactly the tokens where the logit's gradient reaches the last block's
    output (every later step is per token, then the readout): the readout's support."""
    cap = adapter.capture(list(inputs), target=0)
    grad = cap.grad_activations[-1].norm(dim=-1)  # [B, T]
    reached = grad > 1e-6 * grad.max()
    read = readout_weights(cap.token_mask, adapter.pooling, cap.valid_mask) > 0
    assert torch.equal(reached, read), (adapter.pooling, reached.int(), read.int())


def test_a_family_whose_attention_is_not_over_all_tokens_is_refused_by_its_shapes(
        tmp_path, monkeypatch):
    """Without its entry in the table of refused families, Swin (windowed attention over
    shrinking grids) still fails the load-time check of one blank image's attention shapes."""
    import transformers as tf

    from attnxai.models import loading

    monkeypatch.setattr(loading, "UNSUPPORTED_MODEL_TYPES", {})
    tf.SwinForImageClassification(tf.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
        window_size=2, num_labels=3)).save_pretrained(tmp_path)
    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="attention is not over all its"):
        attnxai.load_model(str(tmp_path), device="cpu")


# -- the compatibility matrix: load, audit with effects, attention-Shapley, drill-down -------------
def _encoder(kind: str):
    import transformers as tf

    from conftest import VOCAB

    common = dict(num_labels=3, **LABELS)
    small = dict(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                 **common)
    return {
        "bert": lambda: tf.BertForSequenceClassification(tf.BertConfig(**small)),
        "distilbert": lambda: tf.DistilBertForSequenceClassification(tf.DistilBertConfig(
            vocab_size=len(VOCAB), dim=32, n_layers=2, n_heads=4, hidden_dim=64,
            max_position_embeddings=64, **common)),
        "roberta": lambda: tf.RobertaForSequenceClassification(tf.RobertaConfig(
            **{**small, "max_position_embeddings": 70}, pad_token_id=0)),
        "electra": lambda: tf.ElectraForSequenceClassification(tf.ElectraConfig(
            **small, embedding_size=32)),
        "albert": lambda: tf.AlbertForSequenceClassification(tf.AlbertConfig(
            **small, embedding_size=16)),
        "deberta-v2": lambda: tf.DebertaV2ForSequenceClassification(tf.DebertaV2Config(**small)),
        "modernbert": lambda: tf.ModernBertForSequenceClassification(tf.ModernBertConfig(
            **small, pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2,
            eos_token_id=3)),
    }[kind]()


TEXT_ARCHS = ("bert", "distilbert", "roberta", "electra", "albert", "deberta-v2", "modernbert",
              "gpt2", "llama", "qwen2")
IMAGE_ARCHS = ("vit", "deit-distilled", "beit", "dinov2", "dinov2-registers", "clip", "siglip")
#: Text families whose readout rows are captured without the T x T matrices (one- or two-row
#: readouts through Hugging Face's attention interface); the rest record the full matrices.
READOUT_ROW_ARCHS = {"bert", "distilbert", "roberta", "electra", "albert", "modernbert", "gpt2",
                     "llama", "qwen2"}


def _save(kind: str, folder) -> None:
    import transformers as tf

    from conftest import VOCAB

    torch.manual_seed(0)
    if kind in IMAGE_ARCHS:
        _vision(kind, folder)
    elif kind in ("gpt2", "llama", "qwen2"):
        _decoder(kind).save_pretrained(folder)
        (_byte_level_tokenizer() if kind == "qwen2" else _tokenizer()).save_pretrained(folder)
    else:
        _encoder(kind).save_pretrained(folder)
        tf.BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}).save_pretrained(folder)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """Concept sets (a pool, a concept without pairs, a paired concept) and a labelled dataset,
    for text and for images."""
    import numpy as np
    from PIL import Image

    from attnxai.io.concepts import ConceptSet, save_concept_set

    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("matrix")
    words = WORDS[3:]

    def sent() -> list[str]:
        return list(rng.choice(words, int(rng.integers(3, 6))))

    text = root / "text"
    save_concept_set(ConceptSet("pool", "text", [" ".join(sent()) for _ in range(100)],
                                kind="random_pool"), text)
    save_concept_set(ConceptSet("plain", "text", [" ".join(sent() + ["rain"]) for _ in range(12)],
                                default_pool="pool"), text)
    base = [sent() for _ in range(12)]
    save_concept_set(ConceptSet("won", "text", [" ".join(b + ["won"]) for b in base],
                                counterexamples=[" ".join(b + ["lost"]) for b in base],
                                paired=True, default_pool="pool"), text)
    data = root / "data.csv"
    data.write_text("text,label\n" + "".join(f"{' '.join(sent())},{label}\n"
                                             for label in ["positive"] * 8 + ["negative"] * 2))

    def picture(square: bool = False) -> Image.Image:
        arr = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        if square:
            arr[8:16, 8:16] = 255
        return Image.fromarray(arr)

    images = root / "images"
    save_concept_set(ConceptSet("pics", "image", [picture() for _ in range(100)],
                                kind="random_pool"), images)
    save_concept_set(ConceptSet("red", "image", [Image.new("RGB", (32, 32), (200 + i, 0, 0))
                                                 for i in range(12)],
                                default_pool="pics"), images)
    bases = [picture() for _ in range(12)]
    squares = []
    for b in bases:
        s = b.copy()
        s.paste((255, 255, 255), (8, 8, 16, 16))
        squares.append(s)
    save_concept_set(ConceptSet("square", "image", squares, counterexamples=bases, paired=True,
                                default_pool="pics"), images)
    for label, n in (("positive", 8), ("negative", 2)):
        folder = root / "imgs" / label
        folder.mkdir(parents=True)
        for i in range(n):
            picture().save(folder / f"{i}.png")
    return {"text": (text, str(data), ("plain", "won")),
            "image": (images, str(root / "imgs"), ("red", "square"))}


@pytest.mark.parametrize("kind", TEXT_ARCHS + IMAGE_ARCHS)
def test_compatibility_matrix(kind, worlds, tmp_path):
    """Each architecture, saved and loaded through the folder path: its readout proven by the
    gradient, an audit with every causal effect, attention-Shapley and a drill-down heatmap."""
    from attnxai.audit.config import AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.effects.config import EffectsConfig
    from attnxai.tcav.config import TCAVConfig
    from attnxai.tcav.scores import concept_heatmap

    _save(kind, tmp_path / "model")
    adapter = attnxai.load_model(str(tmp_path / "model"), device="cpu")
    concepts, data, names = worlds[adapter.modality]
    store = Store(tmp_path / "a.duckdb")

    def audit(level: str) -> str:
        return run_audit(AuditConfig(
            model=str(tmp_path / "model"), datasets=(data,), targets=("positive",),
            concepts=names, concept_dir=str(concepts), device="cpu",
            tcav=TCAVConfig(layers=(0, 1), num_cavs=3, num_random=2, num_null=20),
            effects=EffectsConfig(level=level, intervention_null=20)), store, adapter=adapter)
    measures = {"output_logit", "output_prob", "patch_restore", "patch_remove",
                "cav_intervention"}
    if kind == "albert":  # one block shared by every layer: no layer-by-layer edit
        with pytest.raises(UserInputError, match="shares blocks across its layers"):
            audit("all")
        assert store.list_runs().empty
        run_id, measures = audit("output"), {"output_logit", "output_prob"}
    else:
        run_id = audit("all")
    summary, effects = store.summary(run_id), store.results("effects", run_id)
    assert len(summary) == 2 * 2 * 2 and summary["p_value"].between(0, 1).all()
    assert set(effects["measure"]) == measures
    assert effects["mean"].notna().all()
    items = store.inputs(run_id)["input"].tolist()[:3]
    attribution = explain(adapter, items, "attention-shapley")
    assert len(attribution.records(0)) > 0
    cavs = torch.nn.functional.normalize(torch.randn(3, adapter.capture(
        items[:1], grads=False).activations[0].shape[-1]), dim=-1)
    heat = concept_heatmap(adapter, items[0], cavs, layer=0, target="positive")
    assert torch.isfinite(heat.values).all() and heat.valid.any()
    _assert_readout_is_the_gradients_support(adapter, items)
    # TCAV's capture of the readout rows alone gives the full matrices' token weights, and the
    # same logits and activation gradients.
    full = adapter.capture(items, target="positive")
    rows = adapter.capture(items, target="positive", attention="readout")
    assert rows.attention_rows == (kind in READOUT_ROW_ARCHS)
    for layer in range(adapter.num_layers):
        torch.testing.assert_close(
            token_weights(rows.attentions[layer], rows.token_mask, adapter.pooling,
                          rows.valid_mask, rows.attention_rows),
            token_weights(full.attentions[layer], full.token_mask, adapter.pooling,
                          full.valid_mask), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(rows.grad_activations[layer], full.grad_activations[layer],
                                   atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(rows.logits, full.logits, atol=1e-5, rtol=1e-5)


# -- half precision (for GPUs; checked here on the CPU) -------------------------------------------
@pytest.mark.parametrize("kind", ["gpt2", "vit"])
def test_bfloat16_models_stay_close_to_float32(kind, worlds, tmp_path):
    """--dtype bfloat16: the same logits within bfloat16's precision, and a whole audit with
    effects, whose results come back in float32."""
    from attnxai.audit.config import AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.effects.config import EffectsConfig
    from attnxai.tcav.config import TCAVConfig

    _save(kind, tmp_path / "model")
    full = attnxai.load_model(str(tmp_path / "model"), device="cpu")
    half = attnxai.load_model(str(tmp_path / "model"), device="cpu", dtype="bfloat16")
    assert half.card["dtype"] == "bfloat16" and "dtype" not in full.card
    concepts, data, names = worlds[full.modality]
    items = (TEXTS if full.modality == "text"
             else sorted((Path(data) / "positive").glob("*.png"))[:3])
    a, b = full.capture(items, target="positive"), half.capture(items, target="positive")
    assert b.activations[0].dtype == torch.float32  # gathered in float32
    torch.testing.assert_close(b.logits, a.logits, atol=0.05, rtol=0.05)
    store = Store(tmp_path / "a.duckdb")
    run_id = run_audit(AuditConfig(
        model=str(tmp_path / "model"), datasets=(data,), targets=("positive",), concepts=names,
        concept_dir=str(concepts), device="cpu", dtype="bfloat16",
        tcav=TCAVConfig(layers=(0, 1), num_cavs=3, num_random=2, num_null=20),
        effects=EffectsConfig(level="all", intervention_null=20)), store)
    assert store.get_run(run_id).config.dtype == "bfloat16"
    assert store.results("effects", run_id)["mean"].notna().all()


def test_decoder_only_audit_with_effects_through_the_cli(worlds, tmp_path):
    from attnxai.cli.main import main
    from attnxai.audit.report import effects_path

    _save("gpt2", tmp_path / "model")
    concepts, data, names = worlds["text"]
    out = tmp_path / "audit.csv"
    assert main(["audit", "--model", str(tmp_path / "model"), "--device", "cpu", "--data", data,
                 "--target", "positive", "--concepts", ",".join(names), "--concept-dir",
                 str(concepts), "--layers", "0,1", "--num-cavs", "3", "--num-random", "2",
                 "--num-null", "20", "--intervention-null", "20", "--csv", str(out)]) == 0
    import pandas as pd

    assert len(pd.read_csv(out)) == 8
    assert {"patch_restore", "cav_intervention"} <= set(pd.read_csv(effects_path(out))["measure"])


def test_the_last_block_of_a_cls_read_vit_is_not_testable_and_looks_it(worlds, tmp_path):
    """No gradient reaches a [CLS]-read ViT's patch tokens at its last block: that layer is
    stored as not testable, never significant, drawn without a score, and said so."""
    from attnxai.audit.charts import heatmap, layer_chart
    from attnxai.audit.config import AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.audit.verdicts import tcav_verdict
    from attnxai.cli.audit import format_summary
    from attnxai.effects.config import EffectsConfig
    from attnxai.tcav.config import TCAVConfig

    _save("vit", tmp_path / "model")
    concepts, data, names = worlds["image"]
    store = Store(tmp_path / "a.duckdb")
    run_id = run_audit(AuditConfig(
        model=str(tmp_path / "model"), datasets=(data,), targets=("positive",),
        concepts=names[:1], concept_dir=str(concepts), device="cpu",
        tcav=TCAVConfig(layers=(0, 1), num_cavs=3, num_random=2, num_null=20, alpha=0.99),
        effects=EffectsConfig(level="none")), store)
    summary = store.summary(run_id)
    last = summary[summary["layer"] == 1]
    assert (~last["testable"]).all() and (~last["significant"]).all()
    assert summary[summary["layer"] == 0]["testable"].all()
    assert (store.results("cav_scores", run_id).query("layer == 1")["derivative"] == 0).all()
    attention = summary[summary["weighting"] == "attention"]
    assert "not testable at layer 1" in tcav_verdict(attention, 0.99)
    assert "not testable" in format_summary(summary.assign(dataset="d"))
    cells = pd.DataFrame(heatmap(attention).to_dict()["datasets"].popitem()[1])
    assert cells.set_index("layer")["label"][1] == "n/t"
    points = pd.DataFrame(layer_chart(attention).to_dict()["datasets"].popitem()[1])
    assert points.query("layer == 1")["score"].isna().all()
    assert set(points.query("layer == 1")["status"]) == {"not testable"}

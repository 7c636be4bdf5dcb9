"""Helpers every `attnxai` subcommand shares: model arguments, model loading, quiet libraries."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pandas as pd

from attnxai.io.outputs import csv_bytes, write_atomic
from attnxai.options import choices
from attnxai.models.base import ModelAdapter

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (argparse reports anything else, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of at least 1, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def quiet_libraries() -> None:
    """Silence library progress bars and warnings: they would drown the CLI's own output."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def load_model_from_args(args: argparse.Namespace) -> ModelAdapter:
    """The model named by `--model`, `--device`, `--batch-size` and `--trust-remote-code`."""
    from attnxai.models import load_model

    return load_model(args.model, device=args.device, batch_size=args.batch_size,
                      trust_remote_code=getattr(args, "trust_remote_code", False),
                      dtype=getattr(args, "dtype", "float32"))


def add_model_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """Add `--model`, `--device`, `--batch-size` and `--trust-remote-code` to `p`."""
    p.add_argument("--model", required=required, default=None if required else "builtin:minilm-zeroshot",
                   help="builtin:minilm-zeroshot | builtin:shapes-vit | HF id or folder | "
                        "timm:<name>[@checkpoint.safetensors]")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="inputs per forward pass (at least 1; default 32)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow a Hugging Face model's own code to run (off by default)")
    p.add_argument("--dtype", choices=choices("dtype"), default="float32",
                   help="precision the model runs in (half precision: GPUs, and bfloat16 on "
                        "CPUs with bf16 instructions; default float32)")


def write_csv_atomic(path: Path, rows: list[dict[str, Any]] | pd.DataFrame) -> None:
    """Write rows (dicts or a DataFrame) as CSV, formulas neutralised, so a failure leaves no
    half file."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    write_atomic(path, csv_bytes(frame))

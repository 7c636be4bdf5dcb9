"""The README stays true: every Python block runs (in order, sharing one namespace, on the
offline built-ins), and every `attnxai ...` command of its shell blocks parses with the real
argument parser (flags, choices and subcommands as they are today)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from attnxai.cli.main import parse_args
from attnxai.shapes.train import build_parser as trainer_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


def commands() -> list[str]:
    """Every `attnxai ...` command line of the shell blocks, continuations joined, comments cut
    (lines with a "..." placeholder for the arguments shown elsewhere are left out)."""
    out = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("attnxai ") and "..." not in line.split():
                out.append(line)
    return out


def test_the_readme_has_what_this_test_reads():
    assert len(blocks("python")) >= 2 and len(commands()) >= 20


@pytest.mark.parametrize("line", commands())
def test_every_readme_command_parses(line):
    argv = shlex.split(line)[1:]
    try:
        args = parse_args(argv)
        if args.command == "train-shapes":
            trainer_parser().parse_args(args.rest)
    except SystemExit as exc:  # argparse's usage error
        pytest.fail(f"the README's command does not parse ({exc.code}): {line}")
    assert callable(args.func)


def test_every_readme_python_block_runs():
    namespace: dict = {}
    for code in blocks("python"):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert namespace["phi"].shape[0] == 2  # the last block's attributions, one row per text

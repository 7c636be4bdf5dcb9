"""The one constraints table: `validate()`, the CLI's choices and defaults and the dashboard's
widgets all come from it and from the config dataclasses' defaults."""

from __future__ import annotations

import argparse
import math
from typing import get_args

import pytest

from attnxai.audit.config import AuditConfig
from attnxai.cli.audit import TCAV_OPTIONS, audit_config
from attnxai.cli.main import build_parser
from attnxai.errors import UserInputError
from attnxai.stats import CORRECTIONS, STATISTICS, TESTS
from attnxai import options
from attnxai.tcav.config import TCAVConfig
from attnxai.tcav.scores import WEIGHTINGS


def _audit_parser() -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["audit"]


def test_literals_name_what_the_statistics_implement():
    assert set(get_args(options.Test)) == set(TESTS)
    assert set(get_args(options.Correction)) == set(CORRECTIONS)
    assert set(get_args(options.Statistic)) == set(STATISTICS)
    assert set(get_args(options.Weighting)) == {*WEIGHTINGS, "both"}
    # Each Literal lists its default first (the order the CLI and the dashboard show).
    for name in ("weighting", "test", "statistic", "correction", "negatives", "pair_rows"):
        assert options.choices(name)[0] == getattr(TCAVConfig, name)


def test_every_option_default_is_allowed():
    for name, value in {**options.defaults(TCAVConfig), **options.defaults(AuditConfig)}.items():
        if name in options.CONSTRAINTS:
            options.check(name, value)
    TCAVConfig().validate()


@pytest.mark.parametrize("name, value, message", [
    ("seed", -1, "seed must be an integer from 0 to 4294967295, not -1"),
    ("seed", 2**32, "from 0 to 4294967295"),
    ("seed", True, "not True"),  # a bool is not a number here
    ("seed", 1.0, "an integer"),
    ("batch_size", 0, r"None \(the model's default\) or an integer of at least 1, not 0"),
    ("alpha", math.nan, "strictly between 0 and 1"),
    ("alpha", 0, "strictly between 0 and 1"),
    ("l2", 0.0, "greater than 0"),
    ("layers", [], "None \\(every layer\\) or a non-empty list of layer numbers"),
    ("pooling", "max", "None \\(the model's own\\) or one of 'cls', 'mean'"),
])
def test_values_outside_the_table_are_user_errors(name, value, message):
    with pytest.raises(UserInputError, match=message):
        options.check(name, value)


def test_largest_seed_and_unbounded_null_for_tests_without_one():
    TCAVConfig(seed=2**32 - 1, batch_size=1).validate()
    TCAVConfig(test="welch", num_null=0).validate()  # welch does not use the null
    with pytest.raises(UserInputError, match="num_null must be an integer of at least 20"):
        TCAVConfig(num_null=19).validate()


def test_cli_choices_and_defaults_come_from_the_table_and_the_config():
    parser = _audit_parser()
    flags = {a.dest: a for a in parser._actions}
    for name in TCAV_OPTIONS:
        assert flags[name].default == getattr(TCAVConfig(), name)
        if isinstance(options.CONSTRAINTS[name][-1], options.Choice):
            assert tuple(flags[name].choices) == options.choices(name)
        else:
            assert flags[name].choices is None
    args = parser.parse_args(["--model", "m", "--target", "t", "--concepts", "a,b"])
    config = audit_config(args)
    # The CLI's own default is the library's, except the model batch size every command shares.
    assert config == AuditConfig(model="m", targets=("t",), concepts=("a", "b"),
                                 tcav=TCAVConfig(batch_size=32))
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "m", "--target", "t", "--concepts", "c", "--holdout", "1"])
    new = parser.parse_args(["--model", "m", "--target", "t", "--concepts", "c", "--pair-rows",
                             "all", "--pooling", "mean", "--l2", "0.5", "--holdout", "0.4"])
    tcav = audit_config(new).tcav
    assert (tcav.pair_rows, tcav.pooling, tcav.l2, tcav.holdout) == ("all", "mean", 0.5, 0.4)
    # A switch of the table is a bare flag.
    switched = parser.parse_args(["--model", "m", "--target", "t", "--concepts", "c",
                                  "--per-cav-scores"])
    assert audit_config(switched).tcav.per_cav_scores is True
    with pytest.raises(UserInputError, match="per_cav_scores must be True or False"):
        TCAVConfig(per_cav_scores="yes").validate()

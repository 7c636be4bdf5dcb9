"""The options of an audit and the values each may take: the one constraints table.

In the style of scikit-learn's ``_parameter_constraints``, :data:`CONSTRAINTS` maps each option
(a field of :class:`attnxai.tcav.config.TCAVConfig`, :class:`attnxai.effects.config.EffectsConfig`
or :class:`attnxai.audit.config.AuditConfig`; names are unique across them) to what it accepts: ``None``, a :class:`Choice`
of a ``Literal`` type's values, an :class:`Interval`, an :class:`IntList` or a :class:`Flag`. The configs'
``validate()``, the CLI's choices and the dashboard's widgets all read it (:func:`choices`,
:func:`interval`); the defaults are the config dataclasses' field defaults.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal, get_args

from attnxai.errors import UserInputError

# Each Literal lists its default first.
Weighting = Literal["both", "attention", "plain"]
Test = Literal["grouped", "empirical", "welch", "one_sample"]
Statistic = Literal["derivative", "tcav", "magnitude"]
Correction = Literal["hierarchical", "bh", "bonferroni", "none"]
Negatives = Literal["auto", "random", "relative", "matched"]
PairRows = Literal["differing", "all"]
Dtype = Literal["float32", "bfloat16", "float16"]
Pooling = Literal["cls", "mean", "last", "patches", "cls+patches", "cls+dist"]
CAVKind = Literal["logistic", "pattern"]
#: The null a matched-pair concept is tested against: sign-flip CAVs of its own pairs, or the
#: random-vs-random CAVs of its pool.
MatchedNull = Literal["sign_flip", "pool"]
EffectsLevel = Literal["all", "output", "layers", "none"]
#: Where an audit's example and target passes run (attnxai.audit.engines); not stored with the
#: run: the results do not depend on it.
EngineKind = Literal["local", "ray"]
PairedTest = Literal["sign_flip", "wilcoxon"]
PatchTokens = Literal["differing", "all"]


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of strings (a ``Literal`` type's values)."""

    values: tuple[str, ...]

    @classmethod
    def of(cls, literal: Any) -> Choice:
        """The values of a ``Literal`` type."""
        return cls(get_args(literal))

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices."""
        return isinstance(value, str) and value in self.values

    def describe(self) -> str:
        """The choices, for a message."""
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Interval:
    """An integer or a real number within bounds (``None``: unbounded on that side)."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: Literal["both", "left", "right", "neither"] = "both"

    def __post_init__(self) -> None:
        if self.kind not in (int, float):
            raise TypeError(f"Interval kind must be int or float, not {self.kind!r}")

    def inclusive(self) -> tuple[float | None, float | None]:
        """The bounds as inclusive ones where the kind allows (integers), else as declared."""
        low, high = self.low, self.high
        if self.kind is int:
            if low is not None and self.closed in ("right", "neither"):
                low += 1
            if high is not None and self.closed in ("left", "neither"):
                high -= 1
        return low, high

    def _closed(self, side: str) -> bool:
        return self.kind is int or self.closed in ("both", side)

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a number of this kind within the bounds (never a bool or NaN)."""
        numeric = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, numeric) or math.isnan(value):
            return False
        low, high = self.inclusive()
        if low is not None and (value < low if self._closed("left") else value <= low):
            return False
        return high is None or (value <= high if self._closed("right") else value < high)

    def describe(self) -> str:
        """The interval in words, for a message."""
        low, high = (None if b is None else str(b) if self.kind is int else f"{b:g}"
                     for b in self.inclusive())
        noun = "an integer" if self.kind is int else "a number"
        lo_in, hi_in = self._closed("left"), self._closed("right")
        if low is not None and high is not None:
            if lo_in and hi_in:
                return f"{noun} from {low} to {high}"
            if not lo_in and not hi_in:
                return f"{noun} strictly between {low} and {high}"
            return f"{noun} {'>=' if lo_in else '>'} {low} and {'<=' if hi_in else '<'} {high}"
        if low is not None:
            return f"{noun} of at least {low}" if lo_in else f"{noun} greater than {low}"
        if high is not None:
            return f"{noun} of at most {high}" if hi_in else f"{noun} less than {high}"
        return noun


@dataclass(frozen=True)
class IntList:
    """A non-empty list of integers (layer numbers: the model checks their range)."""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a non-empty list or tuple of integers."""
        return (isinstance(value, (list, tuple)) and len(value) > 0
                and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value))

    def describe(self) -> str:
        """What it accepts, for a message."""
        return "a non-empty list of layer numbers"


@dataclass(frozen=True)
class Flag:
    """A switch: True or False (a CLI ``--flag``, a checkbox)."""

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` is a bool."""
        return isinstance(value, bool)

    def describe(self) -> str:
        """What it accepts, for a message."""
        return "True or False"


Constraint = Choice | Interval | IntList | Flag | None

#: Option -> the values it accepts (any of the listed constraints; ``None``: None itself).
CONSTRAINTS: dict[str, tuple[Constraint, ...]] = {
    # TCAVConfig
    "layers": (None, IntList()),  # None = every layer
    "num_cavs": (Interval(int, 2),),
    "num_random": (Interval(int, 2),),
    "num_null": (Interval(int, 20),),  # checked only for the tests that use the null
    "weighting": (Choice.of(Weighting),),
    "test": (Choice.of(Test),),
    "statistic": (Choice.of(Statistic),),
    "correction": (Choice.of(Correction),),
    "alpha": (Interval(float, 0, 1, "neither"),),
    "negatives": (Choice.of(Negatives),),
    "pair_rows": (Choice.of(PairRows),),
    "min_accuracy": (Interval(float, 0, 1),),
    "l2": (Interval(float, 0, None, "neither"),),
    "holdout": (Interval(float, 0, 1, "neither"),),
    "pooling": (None, Choice.of(Pooling)),  # None = the model's own
    "seed": (Interval(int, 0, 2**32, "left"),),
    "batch_size": (None, Interval(int, 1)),  # None = the model's default
    "min_inputs": (Interval(int, 1),),
    "cav": (Choice.of(CAVKind),),
    "matched_null": (Choice.of(MatchedNull),),
    "per_cav_scores": (Flag(),),  # also store S(x) per concept CAV and input (input_scores)
    # EffectsConfig
    "level": (Choice.of(EffectsLevel),),  # EffectsConfig.level, the CLI's --effects
    "paired_test": (Choice.of(PairedTest),),
    "patch_tokens": (Choice.of(PatchTokens),),
    "intervention_cavs": (Interval(int, 2),),  # concept CAVs per CAV intervention
    "intervention_null": (Interval(int, 20),),  # null CAVs per CAV intervention (5 groups+)
    "intervention_inputs": (Interval(int, 1),),
    "min_effect": (Interval(float, 0, 1),),  # a change of probability
    "min_logit_effect": (Interval(float, 0),),
    # AuditConfig
    "limit": (Interval(int, 0),),  # 0 = every input
    "dtype": (Choice.of(Dtype),),  # the precision the model runs in
    # The engine that runs an audit (`attnxai audit --engine`, run_audit's engine)
    "engine": (Choice.of(EngineKind),),
    "num_gpus": (Interval(float, 0),),  # GPUs per Ray worker (fractions share a GPU)
}
_NONE_MEANS = {"layers": "None (every layer)", "pooling": "None (the model's own)",
               "batch_size": "None (the model's default)"}


def check(name: str, value: Any) -> None:
    """Raise :class:`UserInputError` unless ``value`` is allowed for option ``name``."""
    allowed = CONSTRAINTS[name]
    if any(value is None if c is None else c.accepts(value) for c in allowed):
        return
    described = [_NONE_MEANS.get(name, "None") if c is None else c.describe() for c in allowed]
    raise UserInputError(f"{name} must be {' or '.join(described)}, not {value!r}.")


def check_fields(config: Any, skip: tuple[str, ...] = ()) -> None:
    """Check every field of the dataclass ``config`` that has a constraint (except ``skip``)."""
    for f in fields(config):
        if f.name in CONSTRAINTS and f.name not in skip:
            check(f.name, getattr(config, f.name))


def choices(name: str) -> tuple[str, ...]:
    """The values option ``name`` may take (a :class:`Choice`'s; for a CLI or a select box)."""
    for c in CONSTRAINTS[name]:
        if isinstance(c, Choice):
            return c.values
    raise KeyError(f"option {name!r} is not a choice")


def is_flag(name: str) -> bool:
    """Whether option ``name`` is a switch (a :class:`Flag`: a CLI ``--flag``)."""
    return any(isinstance(c, Flag) for c in CONSTRAINTS[name])


def interval(name: str) -> Interval:
    """Option ``name``'s :class:`Interval` (its kind and bounds: for a number widget)."""
    for c in CONSTRAINTS[name]:
        if isinstance(c, Interval):
            return c
    raise KeyError(f"option {name!r} is not a number")


def defaults(config_type: type) -> dict[str, Any]:
    """The field defaults of a config dataclass (fields without a default are left out)."""
    out = {}
    for f in fields(config_type):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out

"""`TCAVConfig`: the settings of a TCAV run, checked against the constraints table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attnxai.options import (CAVKind, Correction, MatchedNull, Negatives, PairRows, Pooling,
                             Statistic, Test, Weighting, check_fields)
from attnxai.stats import NULL_TESTS
from attnxai.tcav.scores import WEIGHTINGS


@dataclass(frozen=True)
class TCAVConfig:
    """Settings of a TCAV run (defaults are the ones the README's calibration supports).

    Frozen: derive another with :func:`dataclasses.replace`. ``layers`` is kept as a tuple.
    The values each field accepts are in :data:`attnxai.options.CONSTRAINTS`.
    """

    layers: Sequence[int] | None = None  # None = all layers
    num_cavs: int = 20  # CAVs per (concept, layer), each with other negatives / another split
    num_random: int = 10  # random-vs-random CAVs reported as the random baseline
    num_null: int = 200  # random-vs-random CAVs forming the null (tests "empirical", "grouped")
    weighting: Weighting = "both"
    test: Test = "grouped"
    statistic: Statistic = "derivative"  # the per-CAV value tested
    correction: Correction = "hierarchical"
    alpha: float = 0.05
    negatives: Negatives = "auto"  # auto: matched if paired, else random
    pair_rows: PairRows = "differing"  # matched CAVs train on the tokens where a pair differs
    cav: CAVKind = "logistic"  # logistic (filter) or pattern (difference of means) CAVs
    matched_null: MatchedNull = "sign_flip"  # matched concepts vs sign-flip CAVs of their pairs
    min_accuracy: float = 0.6  # layers whose concept CAVs are less accurate are unreliable
    l2: float = 1e-2
    holdout: float = 0.25
    pooling: Pooling | None = None  # None: the adapter's own
    seed: int = 0
    batch_size: int | None = None  # None: the adapter's own
    min_inputs: int = 5
    #: Also keep S(x) of every concept CAV for every input (``input_scores``); by default only
    #: its mean, std and positive share over each concept's CAVs are kept (``input_summary``).
    per_cav_scores: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.layers, list):  # a tuple, so the frozen config holds no mutable list
            object.__setattr__(self, "layers", tuple(self.layers))

    def weightings(self) -> list[str]:
        """The weightings scored: both of :data:`WEIGHTINGS`, or the one chosen."""
        return list(WEIGHTINGS) if self.weighting == "both" else [self.weighting]

    def validate(self) -> TCAVConfig:
        """Raise :class:`UserInputError` on the first field outside its constraints; return
        the config."""
        # The null's size matters only to the tests that compare with it.
        check_fields(self, skip=() if self.test in NULL_TESTS else ("num_null",))
        return self

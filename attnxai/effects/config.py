"""`EffectsConfig`: the settings of an audit's causal effects, checked against the constraints
table (:data:`attnxai.options.CONSTRAINTS`)."""

from __future__ import annotations

from dataclasses import dataclass

from attnxai.options import EffectsLevel, PairedTest, PatchTokens, check_fields


@dataclass(frozen=True)
class EffectsConfig:
    """Settings of the causal-effects part of an audit (docs/method.md §6).

    ``level``: ``none``; ``output`` (the output effect of each paired concept); ``layers``
    (also layer-wise activation patching); ``all`` (also CAV interventions for concepts without
    pairs). ``paired_test``: the test of paired differences (``sign_flip`` tests the mean that is
    reported; see the README's calibration). ``patch_tokens``: patch the aligned tokens where a
    pair differs, or every aligned token. A CAV intervention moves the first
    ``intervention_cavs`` of the concept's CAVs and the first ``intervention_null`` of the run's
    null CAVs, on at most ``intervention_inputs`` target inputs spread over them
    (:func:`attnxai.effects.run.spread`): the passes grow with inputs x (CAVs + null). The
    defaults make a third of the passes of the design before them (every input up to 64, 20
    CAVs), which kept every verdict of the demo audit and, on the ground-truth zoo, its verdicts
    within their resampling error; 20 null CAVs, also calibrated, lost the demo's one reliance
    (README, "CAV interventions"). The sign-flip test's resampling is seeded by the caller (an
    audit: its seed).

    ``min_effect`` and ``min_logit_effect``: the minimum relevant effect δ (docs/method.md §8),
    a change of the target's probability (output effects on the probability) and of its logit
    (output effects on the logit, patching, CAV interventions). Every effect is tested against
    it: "relies" when its size is shown to exceed δ, "negligible" when shown to stay below it
    (an equivalence test), else "inconclusive". 0 asks the classic question "is it non-zero?".
    The defaults are the ones the ground-truth zoo chose (README, "Verdicts on models nobody
    tuned for"; ``attnxai bench truth``): 0.03 of probability, 5x that of logit.
    """

    level: EffectsLevel = "all"
    paired_test: PairedTest = "sign_flip"
    patch_tokens: PatchTokens = "differing"
    intervention_cavs: int = 10
    intervention_null: int = 40
    intervention_inputs: int = 16
    min_effect: float = 0.03
    min_logit_effect: float = 0.15

    @property
    def patching(self) -> bool:
        """Whether layer-wise patching runs."""
        return self.level in ("layers", "all")

    @property
    def interventions(self) -> bool:
        """Whether CAV interventions run for concepts without pairs."""
        return self.level == "all"

    def delta(self, measure: str) -> float:
        """The minimum relevant effect of an effects ``measure``, in its own units."""
        return self.min_effect if measure == "output_prob" else self.min_logit_effect

    def validate(self) -> EffectsConfig:
        """Raise UserInputError on the first field outside its constraints; return the config."""
        check_fields(self)
        return self

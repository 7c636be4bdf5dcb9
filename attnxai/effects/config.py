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
    pair differs, or every aligned token. A CAV intervention uses the first
    ``intervention_null`` of the run's null CAVs and at most ``intervention_inputs`` target
    inputs. The sign-flip test's resampling is seeded by the caller (an audit: its seed).
    """

    level: EffectsLevel = "all"
    paired_test: PairedTest = "sign_flip"
    patch_tokens: PatchTokens = "differing"
    intervention_null: int = 40
    intervention_inputs: int = 64

    @property
    def patching(self) -> bool:
        """Whether layer-wise patching runs."""
        return self.level in ("layers", "all")

    @property
    def interventions(self) -> bool:
        """Whether CAV interventions run for concepts without pairs."""
        return self.level == "all"

    def validate(self) -> EffectsConfig:
        """Raise UserInputError on the first field outside its constraints; return the config."""
        check_fields(self)
        return self

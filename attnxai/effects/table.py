"""The tidy effects table: one row per (target, concept, layer, measure).

Measures (docs/method.md §6):

- ``output_logit`` / ``output_prob``: the output effect of a paired concept, the mean over pairs
  of ``f_k(x_with) - f_k(x_without)`` on the target's logit / probability (layer -1);
- ``patch_restore``: how much of the logit effect patching x_with's layer-l activations into
  x_without's run (on the tokens where the pair differs) restores;
- ``patch_remove``: how much of it patching x_without's activations into x_with's run destroys;
- ``cav_intervention``: the mean change of the target logit when α·v is added to every player
  token at layer l, per concept CAV, tested against the run's random CAVs moved by the same α.

``share`` is a patching row's mean over the output effect's mean (1 = the whole effect).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from attnxai.schema import TABLES
from attnxai.stats import (INCONCLUSIVE, NEGLIGIBLE, RELIES, adjust_frame, n_to_settle,
                           relevance_verdicts)

MEASURES = ("output_logit", "output_prob", "patch_restore", "patch_remove", "cav_intervention")
#: Column order of the effects table (and of ``OUT.effects.csv``): the results schema's.
EFFECT_COLUMNS = TABLES["effects"].names()


def effect_frame(rows: list[dict]) -> pd.DataFrame:
    """The effects table from row dicts, in the schema's column order and dtypes."""
    return TABLES["effects"].frame(rows)


def correct_effects(frame: pd.DataFrame, correction: str, alpha: float) -> pd.DataFrame:
    """Adjust the p-values of every test in ``frame`` together (families for the hierarchical
    correction: one concept's measures and layers per dataset and target), the relevance tests'
    (``p_value``) and, separately, the equivalence tests' (``p_negligible``), and give each row
    its verdict (:func:`attnxai.stats.relevance_verdicts`): ``significant`` is "relies". A CAV
    intervention is never "negligible": moving a layer along a CAV by the concept's step can stay
    below δ while inserting the concept moves the output far beyond it (on the ground-truth zoo,
    every planted concept's did; README, "Verdicts on models nobody tuned for"), so it is
    inconclusive there (``p_negligible`` is kept). An inconclusive paired row says about how
    many pairs would settle it (``n_needed``)."""
    out = frame.copy()
    tested = out["p_value"].notna().to_numpy()
    adjusted = np.full(len(out), np.nan)
    negligible = np.full(len(out), np.nan)
    adjusted[tested] = adjust_frame(out[tested], correction)
    negligible[tested] = adjust_frame(out[tested].assign(p_value=out["p_negligible"][tested]),
                                      correction)
    out["p_adjusted"], out["p_negligible"] = adjusted, negligible
    verdict = relevance_verdicts(adjusted, negligible, alpha)
    verdict[(verdict == NEGLIGIBLE) & (out["measure"] == "cav_intervention").to_numpy()] = \
        INCONCLUSIVE
    out["verdict"] = np.where(tested, verdict, None)
    out["significant"] = (out["verdict"] == RELIES).to_numpy()
    out["n_needed"] = np.where((out["verdict"] == INCONCLUSIVE)
                               & (out["measure"] != "cav_intervention"),
                               n_to_settle(out["mean"], _pair_sd(out), out["min_effect"], alpha),
                               np.nan)
    return out


def _pair_sd(frame: pd.DataFrame) -> np.ndarray:
    """The standard deviation of the paired differences behind each row, from its 95%
    Student-t interval (``ci_high - ci_low = 2 t sd / sqrt(n)``)."""
    n = frame["n_pairs"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(0.975, df=np.where(n > 1, n - 1, np.nan))
        return (frame["ci_high"] - frame["ci_low"]).to_numpy(dtype=float) / 2 / t * np.sqrt(n)

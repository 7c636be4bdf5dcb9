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

from attnxai.schema import TABLES
from attnxai.stats import adjust_frame

MEASURES = ("output_logit", "output_prob", "patch_restore", "patch_remove", "cav_intervention")
#: Column order of the effects table (and of ``OUT.effects.csv``): the results schema's.
EFFECT_COLUMNS = TABLES["effects"].names()


def effect_frame(rows: list[dict]) -> pd.DataFrame:
    """The effects table from row dicts, in the schema's column order and dtypes."""
    return TABLES["effects"].frame(rows)


def correct_effects(frame: pd.DataFrame, correction: str, alpha: float) -> pd.DataFrame:
    """Adjust the p-values of every test in ``frame`` together (families for the hierarchical
    correction: one concept's measures and layers per dataset and target) and mark
    significance."""
    out = frame.copy()
    tested = out["p_value"].notna().to_numpy()
    adjusted = np.full(len(out), np.nan)
    adjusted[tested] = adjust_frame(out[tested], correction)
    out["p_adjusted"] = adjusted
    out["significant"] = tested & (np.nan_to_num(adjusted, nan=1.0) < alpha)
    return out

"""`AuditConfig`: everything that defines an audit, stored with the run as its config JSON.

It holds what an audit adds to a TCAV run (model, datasets, targets, concepts, ...) and the
run's :class:`~attnxai.tcav.config.TCAVConfig` as ``tcav``. Both are frozen; the values each
option accepts are in :data:`attnxai.options.CONSTRAINTS`. :meth:`AuditConfig.to_dict`
is the stored JSON; :meth:`AuditConfig.from_dict` reads it back, and also reads the flat layout
of runs stored before the TCAV settings were nested (their fields beside the audit's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from attnxai.effects.config import EffectsConfig
from attnxai.errors import UserInputError
from attnxai.tcav.config import TCAVConfig
from attnxai.options import Dtype, check

DEMO = "demo"
_NAME_LISTS = ("targets", "concepts", "datasets")
#: The dashboard's one-click demo audit, sized to answer within seconds on two CPU cores: two
#: layers of the built-ins' six (the middle and the last), 5 CAVs per concept and layer, and
#: the default grouped test against 20 random CAVs per layer (its least null: 4 groups of 5),
#: with output effects only. Statistically it is the default audit on less data, so its
#: p-values are as honest, its power lower (README, "The one-click demo").
DEMO_TCAV = TCAVConfig(layers=(3, 5), num_cavs=5, num_random=10, num_null=20)
DEMO_EFFECTS = EffectsConfig(level="output")


@dataclass(frozen=True)
class AuditConfig:
    """An audit: ``model`` (spec); ``datasets``: ``"demo"`` (the model's demo data) or dataset
    paths; ``targets``: class names; ``concepts``: concept-set names under ``concept_dir``
    (default: the shipped/configured root); ``tcav``: the statistics settings (layers, CAVs,
    test, seed, batch size, ...); ``effects``: the causal-effects settings; ``limit``: at most this many inputs per dataset and target
    (0 = all); ``labels``: label -> description(s), for a model that takes label descriptions
    (``ModelAdapter.takes_label_descriptions``); ``device``; ``trust_remote_code``; ``dtype``:
    the precision the model runs in (``float32``; ``bfloat16`` or ``float16`` on GPUs).

    Frozen, with its name lists kept as tuples: derive another with :func:`dataclasses.replace`.
    """

    model: str
    datasets: Sequence[str] = (DEMO,)
    targets: Sequence[str] = ()  # required: validation rejects an empty list
    concepts: Sequence[str] = ()  # required, likewise
    tcav: TCAVConfig = field(default_factory=TCAVConfig)
    effects: EffectsConfig = field(default_factory=EffectsConfig)
    limit: int = 0
    concept_dir: str | None = None
    labels: dict[str, str | list[str]] | None = None
    device: str | None = None
    trust_remote_code: bool = False
    dtype: Dtype = "float32"

    def __post_init__(self) -> None:
        for name in _NAME_LISTS:  # tuples, so the frozen config holds no mutable list
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def validate(self) -> AuditConfig:
        """Check what needs no model or files (names, limit, the TCAV settings); raise
        :class:`UserInputError` on the first problem; return the config."""
        for what in _NAME_LISTS:
            values = getattr(self, what)
            if isinstance(values, str) or not values or not all(isinstance(v, str) and v.strip()
                                                               for v in values):
                raise UserInputError(f"An audit needs at least one of {what}, as a list of names.")
            dupes = sorted({v for v in values if list(values).count(v) > 1})
            if dupes:
                raise UserInputError(f"{what} lists {', '.join(dupes)} more than once.")
        check("limit", self.limit)
        check("dtype", self.dtype)
        if not isinstance(self.tcav, TCAVConfig):
            raise TypeError(f"tcav must be a TCAVConfig, not {type(self.tcav).__name__}")
        self.tcav.validate()
        if not isinstance(self.effects, EffectsConfig):
            raise TypeError(f"effects must be an EffectsConfig, not {type(self.effects).__name__}")
        self.effects.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """The config as plain JSON-able data (the ``tcav`` settings nested)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditConfig:
        """The config of :meth:`to_dict`'s output, or of the flat layout older runs stored
        (TCAV fields beside the audit's; nested ones win). Unknown keys are ignored, so a
        config stored by another version still loads."""
        tcav_names = {f.name for f in fields(TCAVConfig)}
        effects_names = {f.name for f in fields(EffectsConfig)}
        own = {f.name for f in fields(cls)} - {"tcav", "effects"}
        nested = data.get("tcav") or {}
        tcav = {k: v for source in (data, nested) for k, v in source.items() if k in tcav_names}
        # Runs stored before effects existed computed none.
        effects = data.get("effects") or {"level": "none"}
        # Runs stored before the minimum relevant effect tested their effects against 0.
        effects = {"min_effect": 0.0, "min_logit_effect": 0.0, **effects}
        return cls(**{k: v for k, v in data.items() if k in own}, tcav=TCAVConfig(**tcav),
                   effects=EffectsConfig(**{k: v for k, v in effects.items() if k in effects_names}))

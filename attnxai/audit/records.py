"""Typed records of the audit store: what a run used, and a stored run as read back."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from attnxai.audit.config import AuditConfig

Status = Literal["running", "completed", "failed", "cancelled"]


@dataclass(frozen=True)
class RunDataset:
    """A dataset of a run: its name in the results, content hash, source and size."""

    dataset: str  # the results' `dataset` column
    dataset_hash: str
    source: str
    n_items: int


@dataclass(frozen=True)
class RunConcept:
    """A concept set or random pool a run used, by version."""

    name: str
    version_hash: str
    role: Literal["concept", "pool"]


@dataclass(frozen=True)
class RunRecord:
    """One stored run (:meth:`attnxai.audit.store.Store.get_run`)."""

    run_id: str
    status: Status
    created: datetime
    finished: datetime | None
    error: str | None
    model: str  # the model spec
    model_hash: str | None
    datasets: list[str]  # names, as in the results' `dataset` column
    targets: list[str]
    concepts: list[str]  # the concepts tested (not the pools)
    seed: int | None
    config: AuditConfig  # as stored (older flat layouts read too)
    library_versions: dict[str, str]
    duration_s: float | None
    activations_cached: int
    activations_computed: int
    pid: int | None
    host: str | None
    dataset_details: tuple[RunDataset, ...]
    concept_versions: tuple[RunConcept, ...]

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def provenance(self) -> dict[str, Any]:
        """The run's config, data, concept versions and libraries as plain data (for display)."""
        return {"config": self.config.to_dict(),
                "datasets": [asdict(d) for d in self.dataset_details],
                "concept_versions": [asdict(c) for c in self.concept_versions],
                "library_versions": self.library_versions, "model_hash": self.model_hash}

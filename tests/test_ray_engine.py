"""The Ray engine on a local 2-CPU cluster gives the local engine's results to 1e-6."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason='ray is not installed (pip install "attnxai[ray]")')

from attnxai.audit.config import AuditConfig  # noqa: E402
from attnxai.audit.engines import make_engine  # noqa: E402
from attnxai.audit.runner import run_audit  # noqa: E402
from attnxai.audit.store import Store  # noqa: E402
from attnxai.effects.config import EffectsConfig  # noqa: E402
from attnxai.io.concepts import ConceptSet, save_concept_set  # noqa: E402
from attnxai.tcav.config import TCAVConfig  # noqa: E402
from conftest import VOCAB  # noqa: E402

WORDS = [w for w in VOCAB if not w.startswith(("[", "##"))]
TABLES = ("summary", "cav_scores", "cav_accuracy", "input_summary", "input_scores", "cavs")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def audit(tmp_path_factory, tiny_bert_dir) -> AuditConfig:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("ray_world")

    def sent(words: list[str]) -> str:
        return " ".join(rng.choice(words, int(rng.integers(3, 8))))

    save_concept_set(ConceptSet("pool", "text", [sent(WORDS) for _ in range(100)],
                                kind="random_pool"), root / "concepts")
    save_concept_set(ConceptSet("sports", "text", [sent(["team", "won", "match", "goal"])
                                                   for _ in range(12)], default_pool="pool"),
                     root / "concepts")
    data = root / "val.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([sent(WORDS), "positive"] for _ in range(10))
    # Batches of 4: three chunks of target inputs (the last one short), over two workers.
    return AuditConfig(model=str(tiny_bert_dir), datasets=(str(data),), targets=("positive",),
                       concepts=("sports",), concept_dir=str(root / "concepts"), device="cpu",
                       tcav=TCAVConfig(num_cavs=3, num_random=2, num_null=20, batch_size=4,
                                       per_cav_scores=True),
                       effects=EffectsConfig(level="none"))


def _results(store: Store, run_id: str) -> dict[str, pd.DataFrame]:
    return {name: store.results(name, run_id) for name in TABLES}


@pytest.mark.timeout(1800)  # a hang guard only: 55 s on 2 quiet cores, 4x that under load
def test_ray_engine_equals_local_engine(cluster, audit, tmp_path):
    local = Store(tmp_path / "local.duckdb")
    local_id = run_audit(audit, local, use_cache=False)
    engine = make_engine("ray")
    assert not engine.started and engine.workers == 2  # joined the test's cluster
    try:
        remote = Store(tmp_path / "ray.duckdb")
        ray_id = run_audit(audit, remote, use_cache=False, engine=engine)
    finally:
        engine.close()
    assert ray.is_initialized()  # the engine leaves a cluster it did not start running
    want, got = _results(local, local_id), _results(remote, ray_id)
    for name in TABLES:
        assert len(got[name]) == len(want[name]) > 0, name
        if name == "cavs":  # float32 vectors as bytes
            vec = lambda df: np.stack([np.frombuffer(v, "<f4") for v in df.vector])  # noqa: E731
            np.testing.assert_allclose(vec(got[name]), vec(want[name]), atol=1e-6)
            continue
        # A worker runs torch on one thread: the fused attention of the target pass (readout
        # rows) then sums in another order, so float32 scores agree to 5 digits, not 6.
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=False, rtol=1e-5,
                                      atol=1e-6)

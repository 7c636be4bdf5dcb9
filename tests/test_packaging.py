"""attnxai as a new user gets it: a wheel built from the repo, installed without its
dependencies into a fresh folder outside the checkout, lists the shipped concept sets and runs
a small demo audit with the checkout out of the import path (torch and friends are the
installed ones, so this takes seconds, not a download: about 15-30 s on two cores)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SETS = sorted(p.name for p in (REPO / "attnxai" / "resources" / "concept_sets").iterdir()
                      if (p / "concept.json").is_file())

DEMO_AUDIT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import attnxai
    from attnxai.audit.config import AuditConfig
    from attnxai.audit.runner import run_audit
    from attnxai.audit.store import Store
    from attnxai.io.concepts import list_concept_sets
    from attnxai.tcav.config import TCAVConfig

    sets = [i.name for i in list_concept_sets() if not i.error]
    config = AuditConfig(model="builtin:minilm-zeroshot", targets=("sports",),
                         concepts=("sports-words",), limit=10, device="cpu",
                         tcav=TCAVConfig(layers=(5,), num_cavs=3, num_random=2, num_null=20))
    store = Store(sys.argv[1])
    run_id = run_audit(config, store)
    run = store.get_run(run_id)
    print(json.dumps({"file": attnxai.__file__, "sets": sets,
                      "path": [str(Path(p or ".").resolve()) for p in sys.path],
                      "status": run.status, "summary": len(store.summary(run_id)),
                      "inputs": len(store.inputs(run_id)),
                      "cavs": sum(len(v) for v in store.cav_vectors(run_id, "sports-words")
                                  .values())}))
""")


def _pip(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           "--no-input", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_wheel_ships_the_concept_sets_and_runs_a_demo_audit_outside_the_checkout(tmp_path):
    # Build from a copy of what the wheel is made of, so the checkout gets no build/ folder.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "attnxai", src / "attnxai",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    _pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src), cwd=tmp_path)
    (wheel,) = wheels.glob("attnxai-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    shipped = {n.split("/")[3] for n in names
               if n.startswith("attnxai/resources/concept_sets/") and n.endswith("/concept.json")}
    assert SHIPPED_SETS and sorted(shipped) == SHIPPED_SETS
    assert "attnxai/resources/shapes_vit/model.safetensors" in names
    assert any(n.startswith("attnxai/resources/demo/") for n in names)

    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PYTHON") and k != "ATTNXAI_CONCEPTS"}
    # -S: no site-packages .pth hooks, so the checkout's editable install cannot be found; the
    # installed wheel, then the dependencies, are all that is importable.
    env.update(PYTHONPATH=os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
               ATTNXAI_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-S", "-c", DEMO_AUDIT, str(tmp_path / "a.duckdb")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(out["file"]).resolve().is_relative_to(target.resolve())
    assert str(REPO) not in out["path"]
    assert out["sets"] == SHIPPED_SETS
    assert out["status"] == "completed" and out["inputs"] == 10
    assert out["summary"] == 2  # one layer x two weightings
    assert out["cavs"] == 3

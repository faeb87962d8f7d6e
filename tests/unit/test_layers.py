"""The service's layers (pyproject.toml ``[tool.importlinter]``) hold, and would catch a breach."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("app", "core", "worker", "prunekit", "prunekit_client")
VERDICT = re.compile(r"^(.+?) (KEPT|BROKEN)\b", re.MULTILINE)


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_layer_contracts_hold() -> None:
    out = _lint_imports(REPO)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_contracts_fail_when_the_worker_imports_the_api_or_the_api_tensorflow(
    tmp_path: Path,
) -> None:
    for name in PACKAGES:
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / "worker" / "lifecycle.py").open("a") as f:
        f.write("\nimport app  # noqa\n")
    with (tmp_path / "app" / "labels.py").open("a") as f:
        f.write("\nimport tensorflow  # noqa\n")
    with (tmp_path / "core" / "records.py").open("a") as f:
        f.write("\nimport fastapi  # noqa\n")

    out = _lint_imports(tmp_path)
    report = out.stdout + out.stderr
    assert out.returncode == 1, report
    verdicts = dict(VERDICT.findall(report))
    assert verdicts == {
        "API and worker over the core over the engine; API and worker independent": "BROKEN",
        "The core imports no web framework and Celery only in its queue contract": "BROKEN",
        "The worker imports no web framework": "BROKEN",  # worker -> app -> fastapi
        "The API and the core never import TensorFlow or Keras": "BROKEN",
        "The engine imports no service code and no web or queue library": "KEPT",
        "The client and CLI talk to the service over HTTP only": "KEPT",
    }, report
    assert "worker.lifecycle -> app" in report and "app.labels -> tensorflow" in report


def test_importing_the_api_and_the_core_loads_no_tensorflow() -> None:
    """Every module of app/ and core/, imported in a fresh interpreter: no TensorFlow, Keras
    or h5py (the static contract sees only direct imports; the engine's registry and spec,
    which the API uses, import TensorFlow only inside functions)."""
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for package in ("app", "core")
        for p in (REPO / package).rglob("*.py")
    )
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules)\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr

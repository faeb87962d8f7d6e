"""No committed file names one machine's directories: data and scratch paths are relative to
the repository or come from a setting (``PRUNEKIT_DATA_DIR``, ``PRUNEKIT_HOME``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SKIP = {
    ".git",
    ".venv",
    "var",
    "work",
    ".venv-tfmot",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".mypy_cache",
    "build",
    "dist",
    "node_modules",
}
SUFFIXES = {".py", ".md", ".toml", ".json", ".yml", ".yaml", ".sh", ".cfg", ".txt", ""}
# a home or workspace directory at the start of a path (not "bench/work/", not "<home>/...")
MACHINE_PATH = re.compile(r"(?<![\w.<>$-])/(?:work|root|home|Users)/\w")


def _files() -> list[Path]:
    """The files git tracks or would track (ignored scratch such as a benchmark's output is
    not committed, so it is not checked); a plain walk where this is no git checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        candidates = [REPO / name for name in listed]
    except (OSError, subprocess.CalledProcessError):
        candidates = list(REPO.rglob("*"))
    out = []
    for path in candidates:
        rel = path.relative_to(REPO)
        if any(part in SKIP or part.endswith(".egg-info") for part in rel.parts):
            continue
        if path.is_file() and path.suffix in SUFFIXES and path.stat().st_size < 5_000_000:
            out.append(path)
    return out


def test_the_pattern_catches_a_machine_path_and_spares_relative_ones() -> None:
    assert MACHINE_PATH.search('DATA = "' + "/wo" + 'rk/shared/data/mnist.npz"')
    assert MACHINE_PATH.search("see /home/alice/prunekit")
    assert not MACHINE_PATH.search("cached in bench/work/dense")
    assert not MACHINE_PATH.search("under <home>/tmp/worker-1")


def test_no_committed_file_names_a_machine_directory() -> None:
    files = _files()
    assert len(files) > 50  # the walk found the repository
    hits = [
        f"{path.relative_to(REPO)}:{n}: {line.strip()[:120]}"
        for path in files
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if MACHINE_PATH.search(line) and path.name != "test_no_machine_paths.py"
    ]
    assert not hits, "absolute machine paths (use a path relative to the repo or a setting):\n" + (
        "\n".join(hits)
    )

"""Code as it was at an earlier commit, imported from the repository's history (``git show``): the planner
generators that built earlier adapters' data (:mod:`speclm.evals.planner`), the redshift search a benchmark
compares with (``benchmarks/catalog_throughput.py``)."""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git_show(commit: str, path: str) -> str:
    """The text of ``path`` at ``commit``; ValueError when git cannot show it here."""
    try:
        return subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ValueError(f"{path} as of commit {commit} cannot be shown by git here ({exc})") from None


def files_at(commit: str, folder: str, dest: Path) -> list[Path]:
    """Copy the files of ``folder`` as of ``commit`` into ``dest/folder``; [] when it did not exist then."""
    try:
        names = subprocess.run(["git", "ls-tree", "--name-only", f"{commit}:{folder}"], cwd=ROOT, capture_output=True,
                               text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []
    out = []
    for n in names:
        p = Path(dest) / folder / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(git_show(commit, f"{folder}/{n}"))
        out.append(p)
    return out


def module_at(commit: str, path: str, name: str, file: str | Path | None = None) -> types.ModuleType:
    """``path`` at ``commit`` executed as a module of its own, registered in ``sys.modules`` (dataclasses
    look their module up by name); ``file`` is its ``__file__`` (where it finds files beside it)."""
    m = types.ModuleType(f"speclm_legacy_{commit}_{name}")
    if file is not None:
        m.__file__ = str(file)
    sys.modules[m.__name__] = m
    exec(compile(git_show(commit, path), f"{commit}:{path}", "exec"), m.__dict__)
    return m

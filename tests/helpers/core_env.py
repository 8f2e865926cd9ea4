"""A fresh virtual environment that holds cgtrain's core install and nothing else.

`pip install .` in a fresh venv would download or unpack ~600 MB per test run. Instead the venv
gets the closure of pyproject's core `dependencies` (each requirement and, recursively, what it
requires, markers evaluated, no extras) linked in from this test environment's site-packages, then
`pip install --no-deps .` of the project. A module outside that closure (torch, transformers,
mlflow, shap, ...) is simply not there, as on a user's core install.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
BUILD = ("setuptools",)  # to build the project's wheel without isolation (no download)


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> dict[str, metadata.Distribution]:
    """Installed distributions that the requirements need, recursively (no extras)."""
    found: dict[str, metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        key = _name(req.name)
        if key in found:
            continue
        found[key] = dist = metadata.distribution(req.name)
        todo.extend(Requirement(r) for r in dist.requires or [])
    return found


def core_requirements() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _top_level(dist: metadata.Distribution) -> set[str]:
    """The entries a distribution put directly in site-packages (packages, modules, its .dist-info)."""
    tops = set()
    for f in dist.files or []:
        first = Path(f).parts[0]
        if first not in ("..", "__pycache__") and not first.endswith(".pth"):
            tops.add(first)
    return tops


def make_core_venv(target: Path) -> Path:
    """Create the venv under `target` and install the project into it; returns its python."""
    venv.create(target, with_pip=False, symlinks=True)
    python = target / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    for dist in closure(core_requirements() + list(BUILD) + ["pip"]).values():
        for top in _top_level(dist):
            link, source = site / top, Path(dist.locate_file(top))
            if source.exists() and not link.exists():
                link.symlink_to(source)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "--no-index", str(ROOT)], check=True,
                   capture_output=True, text=True, timeout=300)
    return python


if __name__ == "__main__":  # python tests/helpers/core_env.py DIR: make one by hand
    print(make_core_venv(Path(sys.argv[1])))

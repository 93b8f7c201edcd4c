"""environment.yml stays equivalent to the pip install declared in pyproject.toml."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
_TOOLING = {"python", "pip", "nodejs"}


def _split(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*(#.*)?$", req)
    assert m, req
    return re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])

    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    have: dict[str, str] = {}
    pip_lines: list[str] = []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines += dep["pip"]
            continue
        name, spec = _split(dep)
        if name not in _TOOLING:
            have[name] = spec.replace("==", "=") if spec.startswith("=") else spec
    for line in pip_lines:
        if line.startswith("-e"):
            continue
        name, spec = _split(line)
        have[name] = spec
    # conda writes exact pins with a single "="; compare in pip's spelling
    have = {k: ("==" + v[1:] if v.startswith("=") and not v.startswith("==") else v) for k, v in have.items()}
    assert have == wanted
    assert "-e ." in pip_lines, "the project itself is installed in the environment"

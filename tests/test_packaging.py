"""environment.yml (conda) and pyproject.toml (pip) must declare the same requirements."""
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}


def _split(req: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = dict(_split(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted.update(_split(r) for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    declared = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            if item.startswith("-e") or item in ("pip",) or item.startswith("python"):
                continue
            name, spec = _split(item)
            declared[CONDA_NAMES.get(name, name)] = spec.replace("=", "==", 1) if re.match(r"^=[^=]", spec) else spec
    assert declared == wanted


def test_python_requirement_agrees():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert f"python{project['requires-python']}" in env["dependencies"]


def test_readme_names_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_licence_is_an_spdx_expression():
    """PEP 639: ``license = "MIT"`` (setuptools warns on the table form and on licence classifiers)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT")
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["license"] == project["license"]


def test_ci_installs_the_browser_for_the_browser_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "chromium" in ci and "apt-get install" in ci

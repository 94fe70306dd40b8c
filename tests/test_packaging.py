"""What rramlib declares it needs: environment.yml (conda) and pyproject.toml (pip) declare the same requirements,
every third-party module rramlib imports is declared (at run time unless it belongs to an extra and is imported
only where that extra is used), and the Python floor is the one the README states."""
import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"pytorch": "torch"}
#: third-party modules that only some uses of rramlib need, and the extra that installs each; they are imported
#: inside the functions that use them, so that ``import rramlib...`` works without the extra
EXTRA_MODULES = {"dask": "cluster", "distributed": "cluster", "dask_jobqueue": "cluster", "peft": "peft",
                 "seaborn": "book", "nbformat": "book", "papermill": "book", "myst_nb": "book",
                 "cffconvert": "book", "pybtex": "book", "IPython": "book",
                 "transformers": "text", "tokenizers": "text", "datasets": "download"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared(requirements: list[str]) -> set[str]:
    """Distribution names that ``requirements`` install: each name, and for ``dask[distributed]`` also the
    ``distributed`` package that dask's extra of that name is."""
    names = set()
    for req in requirements:
        name, extras = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?", req).groups()
        names.add(name.lower().replace("_", "-"))
        if name == "dask" and extras:
            names.update(e.strip() for e in extras.split(","))
    return names


def _imports() -> dict[str, set[tuple[str, bool]]]:
    """Top-level third-party module -> {(file, imported at module level)} over rramlib's sources."""
    found: dict[str, set[tuple[str, bool]]] = {}
    for path in sorted((ROOT / "rramlib").rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root != "rramlib" and root not in sys.stdlib_module_names and root != "__future__":
                    found.setdefault(root, set()).add((path.relative_to(ROOT).as_posix(), id(node) in top))
    return found


def _split(req: str) -> tuple[str, str]:
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = _project()
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


def test_every_imported_module_is_declared():
    """A module of an extra is declared in that extra and imported only inside functions; every other
    third-party module rramlib imports (PyYAML for list-valued parameters, for one) is a run-time dependency."""
    project = _project()
    run_time = _declared(project["dependencies"])
    extras = {name: _declared(reqs) for name, reqs in project["optional-dependencies"].items()}
    distributions = importlib.metadata.packages_distributions()
    imports = _imports()
    assert {"torch", "yaml", "dask"} <= set(imports)  # the scan sees imports at module level and inside functions
    problems = []
    for module, uses in sorted(imports.items()):
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        extra = EXTRA_MODULES.get(module)
        if extra is None:
            if not dists & run_time:
                problems.append(f"{module} ({', '.join(sorted(dists))}) is not a run-time dependency")
        else:
            if not dists & extras[extra]:
                problems.append(f"{module} ({', '.join(sorted(dists))}) is not in the {extra} extra")
            problems += [f"{file} imports {module} (the {extra} extra) at module level" for file, top in uses if top]
    assert not problems, "\n".join(problems)


def test_python_requirement_agrees():
    project = _project()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert f"python{project['requires-python']}" in env["dependencies"]
    floor = re.fullmatch(r">=(3\.\d+)", project["requires-python"]).group(1)
    assert f"Python ≥ {floor}" in (ROOT / "README.md").read_text()
    assert sys.version_info >= tuple(map(int, floor.split(".")))  # tests and code use what the floor offers


def test_the_fast_lane_is_documented():
    """``slow`` is a registered marker, the README shows the fast lane, and every run lists its slowest tests."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(m.startswith("slow:") for m in options["markers"])
    assert "--durations=" in options["addopts"]
    assert 'pytest -m "not slow"' in (ROOT / "README.md").read_text()


def test_readme_names_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci


def test_licence_is_an_spdx_expression():
    """PEP 639: ``license = "MIT"`` (setuptools warns on the table form and on licence classifiers)."""
    project = _project()
    assert project["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT")
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["license"] == project["license"]


def test_ci_installs_the_browser_for_the_browser_test():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "chromium" in ci and "apt-get install" in ci

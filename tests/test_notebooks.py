"""Static checks of the book's notebooks (no execution): shape, names, parameter handling, claims keys."""
import ast
import io
import json
import tokenize
from pathlib import Path

import pytest

from rramlib.book import glued_keys
from rramlib.study.claims import CLAIMS
from rramlib.present.notebook import PARAMETERS, check_parameters

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CELL_LINES = 30


def _nb(path):
    return json.loads(path.read_text())


def _code(nb):
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _parameters(nb) -> dict:
    """name -> literal default of the parameters cell."""
    tree = ast.parse(_code(nb)[0])
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stripped_with_one_parameters_cell_first(path):
    nb = _nb(path)
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [i for i, c in enumerate(code_cells) if "parameters" in c["metadata"].get("tags", [])]
    assert tagged == [0]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code_cells)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_code_cells_are_short(path):
    long = {i: n for i, src in enumerate(_code(_nb(path))) if (n := len(src.strip("\n").splitlines())) > MAX_CELL_LINES}
    assert not long, f"code cells over {MAX_CELL_LINES} lines (cell index: lines): {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_private_names(path):
    """No name or attribute starting with an underscore (strings, comments and the throwaway `_` do not count)."""
    found = []
    for src in _code(_nb(path)):
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.NAME and tok.string.startswith("_") and tok.string != "_":  # "_": throwaway
                found.append(f"line {tok.start[0]}: {tok.line.strip()}")
    assert not found, found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_hands_all_its_parameters_to_start(path):
    """The cell after the parameters calls ``start("<stem>", name=name, ...)`` with every parameter, by name."""
    nb = _nb(path)
    params = _parameters(nb)
    tree = ast.parse(_code(nb)[1])
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "start"]
    assert len(calls) == 1, "the set-up cell must call start(...) once"
    call = calls[0]
    assert [a.value for a in call.args] == [path.stem]
    passed = {k.arg: k.value.id for k in call.keywords if isinstance(k.value, ast.Name)}
    assert passed == {k: k for k in params}, "every parameter, passed as itself"
    assert not set(params) - set(PARAMETERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameter_defaults_pass_the_checks(path):
    params = _parameters(_nb(path))
    for profile in ("smoke", "quick", "paper"):
        checked = check_parameters({**params, "profile": profile})
        assert set(checked) == set(params)
        assert all(v is not None for k, v in checked.items() if PARAMETERS[k].default is not None)


@pytest.mark.parametrize("claim", [c for c in CLAIMS if c.notebook], ids=lambda c: c.id)
def test_every_claim_key_is_glued_by_its_notebook(claim):
    from rramlib.study.claims import SETTINGS_CHAPTERS, SETTINGS_COLUMNS

    if claim.over_settings:  # a column of the settings table that every settings chapter stores
        assert claim.key in SETTINGS_COLUMNS and claim.notebook in SETTINGS_CHAPTERS
        for stem in SETTINGS_CHAPTERS:
            cells = _nb(next(p for p in NOTEBOOKS if p.stem == stem))["cells"]
            assert any("report.table(SETTINGS_TABLE" in "".join(c["source"]) for c in cells), stem
        return
    path = next(p for p in NOTEBOOKS if p.stem == claim.notebook)
    patterns = glued_keys(_nb(path), path.stem)
    for key in [claim.key, *([f"{claim.key}_low", f"{claim.key}_high"] if claim.interval else [])]:
        assert any(p.match(key) for p in patterns), f"{claim.notebook} glues no {key!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_are_hidden_dropdowns(path):
    """A solution in a notebook sits in a MyST admonition with the dropdown class (hidden by default)."""
    for cell in _nb(path)["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "Solution" in text:
            assert "{admonition} Solution" in text and ":class: dropdown" in text


#: What reads data or trains: a notebook calls these only through its Notebook object (``nb.sweep``, ``nb.prepare``,
#: ``nb.fitted``, ``nb.greedy_schedule``, ``nb.base_model``, ``nb.train_pair``), which passes the data folder itself.
DATA_FUNCTIONS = {"prepare", "run_sweep", "train_base_model", "train_pair", "load_dataset", "greedy_schedule",
                  "run_search", "tuned_method_params", "run_headline"}


def direct_data_calls(source: str) -> list[str]:
    """Calls (and imports) of :data:`DATA_FUNCTIONS` in ``source`` other than through ``nb.``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name in DATA_FUNCTIONS]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            through_nb = isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "nb"
            if name in DATA_FUNCTIONS and not through_nb:
                found.append(f"line {node.lineno}: {ast.unparse(func)}(...)")
    return found


def test_direct_data_calls_are_found():
    assert direct_data_calls("exp = prepare(config, data_root=p.data_root)") == ["line 1: prepare(...)"]
    assert direct_data_calls("from rramlib.study import experiments\nr = experiments.run_sweep(c)") == [
        "line 2: experiments.run_sweep(...)"]
    assert direct_data_calls("from rramlib.study.hidden_fold import train_pair") == ["line 1: import train_pair"]
    assert direct_data_calls("r = nb.sweep(c)\ne = nb.prepare(c)\npair = nb.train_pair()") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_reach_data_only_through_the_notebook_object(path):
    """``make book PROFILE=paper DATA_ROOT=DIR`` must reach every chapter: no notebook reads data or trains but
    through ``nb``, whose methods pass the data folder (``RRAMLIB_DATA_ROOT`` or the ``data_root`` parameter)."""
    found = [f"cell {i}, {hit}" for i, src in enumerate(_code(_nb(path))) for hit in direct_data_calls(src)]
    assert not found, found

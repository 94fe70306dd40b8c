"""The book's infrastructure: committed notebooks, glue keys, build keys, the builder's checks.

Fast: two tiny notebooks are executed (one kernel each); the real notebooks are only read.
CI builds the smoke book after the tests (``make book PROFILE=smoke``).
"""
import json
import re
import socket
from pathlib import Path

import nbformat
import pytest
import yaml

from rramlib import book
from rramlib.book import (
    BookError, NotebookError, build_key, check_offline, execute_notebook, forbidden_strings, glue_references,
    glued_keys, make_toc, parse_parameter, scan_outputs, source_files,
)
from rramlib.cli import main
from rramlib.errors import RramlibError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = book.notebook_paths(ROOT / "notebooks")
STATIC_PAGES = sorted((ROOT / "book").glob("*.md"))


def _read(path):
    return nbformat.read(path, as_version=4)


def _ids(paths):
    return [p.name for p in paths]


def _new_notebook(*sources, parameters="profile = 'quick'\nout_dir = 'results'"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(s) for s in sources)]
    return nb


# ----------------------------------------------------------------------------------------------
# the committed notebooks

def test_notebook_folder_holds_only_book_notebooks():
    stray = [p.name for p in (ROOT / "notebooks").glob("*.ipynb") if p not in NOTEBOOKS]
    assert not stray, f"notebooks the builder would ignore (name them NN_topic.ipynb): {stray}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_is_committed_stripped(path):
    nb = _read(path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"cell {i} has outputs: strip them before committing"
            assert cell.execution_count is None, f"cell {i} has an execution count"
    assert "papermill" not in nb.metadata and "rramlib" not in nb.metadata, "metadata of an executed copy"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_parameters_cell(path):
    nb = _read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    assert code and code[0] is tagged[0], "the parameters cell must be the first code cell"
    names = set(book.declared_parameters(nb))
    assert {"profile", "out_dir"} <= names, f"parameters must include profile and out_dir, got {sorted(names)}"


# ----------------------------------------------------------------------------------------------
# glue keys: every reference is glued by a code cell of the notebook it names

def _glued():
    return {f"notebooks/{p.stem}": (_read(p), glued_keys(_read(p), p.stem)) for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_glue_references_are_glued(path):
    glued = _glued()
    doc = f"notebooks/{path.stem}"
    problems = [p for cell in glued[doc][0].cells if cell.cell_type == "markdown"
                for p in book._unresolved(doc, cell.source, glued)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", STATIC_PAGES, ids=_ids(STATIC_PAGES))
def test_static_page_glue_references_are_glued(page):
    glued = _glued()
    refs = glue_references(page.read_text())
    for ref_doc, key, _ in refs:
        assert ref_doc is not None, f"{page.name}: {key!r} must name its notebook (notebooks/NN_x.ipynb::{key})"
        target = re.sub(r"\.ipynb$", "", ref_doc.lstrip("/"))
        if target not in glued:
            pytest.skip(f"{target} does not exist yet")
    problems = book._unresolved(page.stem, page.read_text(), glued)
    assert not problems, "\n".join(problems)


def test_glue_scan_reads_roles_directives_and_fstrings():
    text = ("a {glue:text}`acc:.2f` b {glue:}`tab` c {glue}`x` d "
            "{glue:text}`notebooks/09_claims.ipynb::claim_1:.1%`\n```{glue:figure} fig_a\n:name: f\n```\n"
            ":::{glue:math} eq\n:::\n")
    assert glue_references(text) == [
        (None, "acc", "text"), (None, "tab", "any"), (None, "x", "any"),
        ("notebooks/09_claims.ipynb", "claim_1", "text"), (None, "fig_a", "figure"), (None, "eq", "math")]
    nb = _new_notebook('report = Report("07_x", params, out_dir)\nreport.number("acc", 1)\n'
                       'report.table(f"t_{name}_end", df)\nglue("fig_a", fig, display=False)\nreport.finish()')
    patterns = glued_keys(nb, "07_x")
    for key in ("acc", "t_pcm_end", "fig_a", "07_x_runtime_s", "07_x_peak_rss_mb"):
        assert any(p.match(key) for p in patterns), key
    for key in ("ac", "acc2", "t__end_x", "other"):
        assert not any(p.match(key) for p in patterns), key


# ----------------------------------------------------------------------------------------------
# static chapters and the table of contents

def _prose(text: str) -> str:
    """Markdown without code, math, glue roles, directives' options, link targets and comments."""
    text = re.sub(r"(?ms)^(```+|~~~+|:::+)\s*\{(code|code-block|math|literalinclude)\}.*?^\1\s*$", "", text)
    text = re.sub(r"(?ms)^(```+|~~~+).*?^\1\s*$", "", text)
    text = re.sub(r"(?s)\$\$.*?\$\$|\$[^$\n]+\$", "", text)
    text = re.sub(r"\{[\w:-]+\}`[^`]*`|``[^`]*``|`[^`]*`", "", text)
    text = re.sub(r"\]\([^)]*\)|<!--.*?-->|^\s*:[\w-]+:.*$|^\(.*\)=$", "", text, flags=re.M | re.S)
    return re.sub(r"(?m)^\s*\d+\.\s", "", text)  # numbered list items


@pytest.mark.parametrize("page", STATIC_PAGES, ids=_ids(STATIC_PAGES))
def test_static_chapters_type_no_numbers(page):
    """Numbers of ours come from notebooks (glue); prose states none. Names like ResNet-20 and the years
    of references are fine."""
    numbers = re.findall(r"(?<![\w\-.+/])\d+(?:[.,]\d+)*\s*%?(?![\w\-])", _prose(page.read_text()))
    numbers = [n for n in numbers if not re.fullmatch(r"(19|20)\d\d", n)]
    assert not numbers, f"{page.name} types numbers into prose: {numbers[:10]}; glue them from a notebook"


def test_parameters_named_in_static_pages_exist():
    """Every ``-p NAME`` a static page shows is a parameter some notebook declares."""
    if not NOTEBOOKS:
        pytest.skip("no notebooks yet")
    declared = set().union(*(book.declared_parameters(_read(p)) for p in NOTEBOOKS))
    for page in STATIC_PAGES:
        for name in re.findall(r"(?<![\w-])-p\s+([A-Za-z_]\w*)", page.read_text()):
            assert name in declared, f"{page.name} shows -p {name}, which no notebook declares"


def test_toc_lists_every_static_chapter_and_notebook():
    toc = yaml.safe_load((ROOT / "book" / "_toc.yml").read_text())
    text = json.dumps(toc)
    files = set(re.findall(r'"(?:file|root)": "([^"]+)"', text))
    for page in STATIC_PAGES:
        assert page.stem in files, f"book/{page.name} is not in book/_toc.yml"
    for path in NOTEBOOKS:
        assert f"notebooks/{path.stem}" in files, f"{path.name} is not in book/_toc.yml"
    for f in files:
        if not f.startswith("notebooks/"):
            assert (ROOT / "book" / f"{f}.md").exists(), f"book/_toc.yml names a missing page {f}"


def test_make_toc_keeps_existing_notebooks_and_appends_unlisted():
    toc = {"format": "jb-book", "root": "intro", "parts": [
        {"caption": "A", "chapters": [{"file": "devices", "sections": [{"file": "notebooks/01_a"}]}]},
        {"caption": "B", "chapters": [{"file": "notebooks/02_b"}, {"file": "notebooks/03_c"}]},
        {"caption": "C", "chapters": [{"file": "notebooks/09_d"}]}]}
    out, appended = make_toc(toc, ["02_b", "05_new"])
    assert out["parts"][0] == {"caption": "A", "chapters": [{"file": "devices"}]}
    assert out["parts"][1] == {"caption": "B", "chapters": [{"file": "notebooks/02_b"}]}
    assert out["parts"][2] == {"caption": book.EXTRA_PART, "chapters": [{"file": "notebooks/05_new"}]}
    assert len(out["parts"]) == 3 and appended == ["05_new"]


def test_book_config_serves_mathjax_locally():
    config = yaml.safe_load((ROOT / "book" / "_config.yml").read_text())
    sphinx = config["sphinx"]["config"]
    assert "://" not in sphinx["mathjax_path"] and sphinx["html_static_path"] == [book.ASSETS]
    assert "sphinx_thebe" not in sphinx["extensions"] and config["execute"]["execute_notebooks"] == "off"
    assert not (ROOT / "book" / "_static").exists()
    assert (book._mathjax_dir() / "tex-chtml.js").exists()


def test_citation_bibtex_from_citation_cff():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    bib = book.citation_bibtex(cff)
    assert bib.count("\n@") + bib.startswith("@") == 1 + len(cff.get("references", []))
    for ref in cff.get("references", []):
        assert ref["title"] in bib


def test_check_offline_flags_remote_scripts(tmp_path):
    (tmp_path / "_static" / "mathjax").mkdir(parents=True)
    (tmp_path / "_static" / "mathjax" / "tex-chtml.js").write_text("")
    (tmp_path / "index.html").write_text('<script src="_static/mathjax/tex-chtml.js"></script>'
                                         '<a href="https://example.org">a link is fine</a>')
    assert check_offline(tmp_path) == []
    (tmp_path / "page.html").write_text('<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex.js"></script>')
    assert check_offline(tmp_path)


# ----------------------------------------------------------------------------------------------
# build keys

def test_build_key_changes_with_every_input():
    nb, params, sources = b'{"cells": []}', {"profile": "smoke", "out_dir": "../results"}, {"a.py": b"x = 1"}
    key = build_key(nb, params, sources, "0.1.0")
    assert key == build_key(nb, dict(reversed(params.items())), dict(sources), "0.1.0")  # same inputs
    others = [
        build_key(b'{"cells": [1]}', params, sources, "0.1.0"),
        build_key(nb, {**params, "profile": "quick"}, sources, "0.1.0"),
        build_key(nb, {**params, "drift_scale": 2}, sources, "0.1.0"),
        build_key(nb, params, {"a.py": b"x = 2"}, "0.1.0"),
        build_key(nb, params, {**sources, "b.py": b""}, "0.1.0"),
        build_key(nb, params, {"b.py": b"x = 1"}, "0.1.0"),
        build_key(nb, params, sources, "0.2.0"),
        build_key(nb, params, sources, "0.1.0", upstream={"01_a": "f" * 64}),
    ]
    assert len({key, *others}) == 1 + len(others)


def test_source_files_cover_the_package():
    files = source_files()
    assert "cli.py" in files and "drift/base.py" in files and "book.py" not in files
    assert any(f.endswith(".csv") for f in files)
    assert not any("__pycache__" in f for f in files)


def test_parse_parameter_like_papermill():
    assert parse_parameter("drift_scale", "2") == ("drift_scale", 2)
    assert parse_parameter("rd", "0.3") == ("rd", 0.3)
    assert parse_parameter("flag", "True") == ("flag", True)
    assert parse_parameter("x", "None") == ("x", None)
    assert parse_parameter("preset", "ibm_pcm") == ("preset", "ibm_pcm")
    assert parse_parameter("ranks", "[4, 8]") == ("ranks", [4, 8])
    assert parse_parameter("p", "{rd: 0.3}") == ("p", {"rd": 0.3})
    here = Path(__file__)
    assert parse_parameter("table", str(here.relative_to(Path.cwd())) if here.is_relative_to(Path.cwd())
                           else str(here)) == ("table", str(here.resolve()))
    for name in ("profile", "out_dir", "not-a-name"):
        with pytest.raises(RramlibError):
            parse_parameter(name, "1")


def test_cli_book_rejects_bad_input_before_work(capsys, monkeypatch):
    monkeypatch.setattr(book, "_stage_static", lambda *a, **k: pytest.fail("staged before checking"))
    assert main(["book", "--profile", "huge"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown profile 'huge'")
    assert main(["book", "--profile", "smoke", "-p", "profile", "quick"]) == 2
    assert "use --profile" in capsys.readouterr().err
    assert main(["book", "--profile", "smoke", "-p", "drift_scle", "2"]) == 2
    assert capsys.readouterr().err.startswith("error: no notebook has the parameter(s) drift_scle")


def test_declared_parameters():
    nb = _new_notebook("y = 2", parameters="profile = 'quick'\nout_dir: str = 'results'\nranks = (4, 16)")
    assert book.declared_parameters(nb) == ["profile", "out_dir", "ranks"]


# ----------------------------------------------------------------------------------------------
# the builder's execution function and output scan (each runs one small kernel)

def test_notebook_rramlib_error_gives_the_cli_message(tmp_path, capsys):
    path = tmp_path / "01_bad.ipynb"
    nbformat.write(_new_notebook("from rramlib.experiments import SweepConfig\nSweepConfig(preset=preset)",
                                 parameters="profile = 'smoke'\nout_dir = 'results'\npreset = 'ibm_pcm'"), path)
    with pytest.raises(NotebookError) as info:
        execute_notebook(path, tmp_path / "out" / path.name, {"profile": "smoke", "preset": "nonsense"},
                         cache_dir=tmp_path / "cache")
    assert info.value.exit_code == 2 and info.value.ename == "RramlibError"
    assert main(["sweep", "--preset", "nonsense", "--out", str(tmp_path / "x.json")]) == 2
    assert info.value.message == capsys.readouterr().err.strip()
    assert info.value.message.startswith("error: unknown preset 'nonsense'")
    # other exceptions name the notebook and the cell, with exit code 1
    other = NotebookError("02_x", "ZeroDivisionError", "division by zero", 3, "Traceback\n1/0")
    assert other.exit_code == 1 and "02_x" in other.message and "ZeroDivisionError" in other.message
    assert isinstance(other, BookError)


def test_scan_finds_paths_and_host_name_in_outputs(tmp_path):
    path = tmp_path / "01_scan.ipynb"
    nbformat.write(_new_notebook("import os, socket\nprint(os.getcwd())\nprint('host', socket.gethostname())"),
                   path)
    out = tmp_path / "out" / path.name
    execute_notebook(path, out, {"profile": "smoke"}, cache_dir=tmp_path / "cache")
    nb = _read(out)
    assert nb.metadata["papermill"]["input_path"] == "01_scan.ipynb"  # no absolute path in metadata
    findings = scan_outputs(nb, forbidden=forbidden_strings() + [str(tmp_path.resolve())])
    assert any(str(tmp_path.resolve()) in f or "/tmp/" in f for f in findings), findings
    assert any("host name" in f for f in findings), findings
    for cell in nb.cells:
        cell.outputs = []
    assert scan_outputs(nb) == []


def test_scan_skips_binary_outputs_and_partial_host_words():
    nb = _new_notebook("x")
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBOR/tmp/xx",
                                                                        "text/plain": "<Figure vmax>"})]
    assert scan_outputs(nb, hostname="vm") == []
    nb.cells[1].outputs.append(nbformat.v4.new_output("stream", name="stderr", text="on vm:\n"))
    assert len(scan_outputs(nb, hostname="vm")) == 1
    nb.cells[1].outputs = [nbformat.v4.new_output("error", ename="E", evalue="x",
                                                  traceback=["File /home/me/x.py"])]
    assert scan_outputs(nb, hostname=socket.gethostname())

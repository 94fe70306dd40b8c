"""The book's infrastructure: committed notebooks, glue keys, build keys, the builder's checks.

Fast: a few tiny notebooks are executed (one kernel each); the real notebooks are only read.
The smoke book itself is built and opened in a browser by ``tests/test_browser.py``.
"""
import json
import re
import socket
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from rramlib import __version__, book
from rramlib.book import (
    BookError, NotebookError, build_key, check_offline, execute_notebook, forbidden_strings, glue_references,
    glued_keys, make_toc, parse_parameter, scan_outputs, source_files,
)
from rramlib.book.display import column_format, frame_html
from rramlib.book.present import book_command, build_box, present, rerun_command
from rramlib.cli.main import main
from rramlib.core.errors import RramlibError
from rramlib.core.params import parse_assignment, parse_value
from tiny_book import tiny_book_dirs

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
                for p in book.unresolved_glue(doc, cell.source, glued)]
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
    problems = book.unresolved_glue(page.stem, page.read_text(), glued)
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
    assert (book.mathjax_dir() / "tex-chtml.js").exists()


def test_citation_files_agree_with_the_package():
    """CITATION.cff is valid CFF, names the package's version, and .zenodo.json says what cffconvert derives."""
    from pybtex.database import parse_string

    text = (ROOT / "CITATION.cff").read_text()
    cff = yaml.safe_load(text)
    assert str(cff["version"]) == __version__
    zenodo = json.loads((ROOT / ".zenodo.json").read_text())
    for key, value in book.zenodo_metadata(text).items():
        assert zenodo[key] == value, key
    assert zenodo["upload_type"] == "software"
    bib = parse_string(book.citation_bibtex(text), "bibtex")  # the page's BibTeX parses back
    assert len(bib.entries) == 1 + len(cff["references"])
    software = bib.entries[next(iter(bib.entries))]
    assert software.fields["title"] == cff["title"] and software.fields["year"] == str(cff["date-released"])[:4]
    for ref in cff["references"]:
        entry = next(e for e in bib.entries.values() if e.fields["title"] == ref["title"])
        assert entry.fields["year"] == str(ref["year"])
        assert [p.last_names[0] for p in entry.persons["author"]] == [a["family-names"] for a in ref["authors"]]


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
        build_key(nb, params, sources, "0.1.0", environment={"OMP_NUM_THREADS": "1"}),
        build_key(nb, params, sources, "0.1.0", environment={"OMP_NUM_THREADS": "2"}),
    ]
    assert len({key, *others}) == 1 + len(others)
    assert build_key(nb, params, sources, "0.1.0", environment={}) == key  # no variables: the key as before


def test_source_files_cover_the_package():
    files = source_files()
    assert "cli/main.py" in files and "device/drift/base.py" in files and "core/params.py" in files
    # the builder is left out (editing it re-executes nothing); what runs inside the kernels stays in
    assert "book/display.py" in files and not any(f.startswith("book/") and f != "book/display.py" for f in files)
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
    monkeypatch.setattr(book.builder, "stage_static", lambda *a, **k: pytest.fail("staged before checking"))
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
    nbformat.write(_new_notebook("from rramlib.study.experiments import SweepConfig\nSweepConfig(preset=preset)",
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


def test_unfinished_runs_ledger_keeps_the_seconds_of_runs_that_stopped(tmp_path):
    from rramlib.book.execute import UnfinishedRuns

    executed = tmp_path / "03_x.ipynb"
    with UnfinishedRuns(executed, "k1", heartbeat_s=0.02) as first:
        assert first.earlier == []
        time.sleep(0.15)
        noted = json.loads(executed.with_suffix(".unfinished.json").read_text())
        assert noted["build_key"] == "k1" and noted["current_s"] >= 0.02  # the heartbeat writes while it runs
    # the run stopped without finish(): the next run with the same key counts it
    with UnfinishedRuns(executed, "k1", heartbeat_s=10) as second:
        assert len(second.earlier) == 1 and 0.15 <= second.earlier[0] < 5
    with UnfinishedRuns(executed, "k1", heartbeat_s=10) as third:
        assert len(third.earlier) == 2 and third.earlier_seconds >= 0.15
        third.finish()
    assert not executed.with_suffix(".unfinished.json").exists()
    # another build key, or a ledger that is not JSON, counts nothing
    with UnfinishedRuns(executed, "k1", heartbeat_s=10):
        pass
    with UnfinishedRuns(executed, "k2", heartbeat_s=10) as other:
        assert other.earlier == []
    executed.with_suffix(".unfinished.json").write_text('{"build_key": "k2", "earlier_s": [1')
    with UnfinishedRuns(executed, "k2", heartbeat_s=10) as broken:
        assert broken.earlier == []


def test_execution_after_an_unfinished_one_reports_both(tmp_path):
    from rramlib.book.builder import _unfinished_note

    path = tmp_path / "01_flaky.ipynb"
    flag = tmp_path / "ready"
    nbformat.write(_new_notebook(f"import pathlib\nassert pathlib.Path({str(flag)!r}).exists(), 'not yet'"), path)
    out = tmp_path / "out" / path.name
    ledger = out.with_suffix(".unfinished.json")
    meta = {"build_key": "key-a"}
    with pytest.raises(NotebookError):
        execute_notebook(path, out, {"profile": "smoke"}, cache_dir=tmp_path / "cache", metadata=meta)
    failed = json.loads(ledger.read_text())
    assert failed["build_key"] == "key-a" and failed["earlier_s"] == [] and failed["current_s"] > 0
    # an interrupted execution before it (as a killed builder leaves its last note)
    ledger.write_text(json.dumps({"build_key": "key-a", "earlier_s": [100.0], "current_s": failed["current_s"]}))
    flag.write_text("")
    seconds = execute_notebook(path, out, {"profile": "smoke"}, cache_dir=tmp_path / "cache", metadata=meta)
    rr = _read(out).metadata["rramlib"]
    assert rr["unfinished_runs"] == 2 and rr["unfinished_seconds"] == pytest.approx(100 + failed["current_s"], abs=1e-3)
    assert rr["seconds"] == pytest.approx(seconds, abs=1e-3) and seconds > rr["unfinished_seconds"]
    assert not ledger.exists()
    assert _unfinished_note(out) == f"  (2 earlier execution(s) unfinished: {rr['unfinished_seconds']:.1f} s of it)"
    # without a build key nothing is counted or left behind
    execute_notebook(path, out, {"profile": "smoke"}, cache_dir=tmp_path / "cache")
    assert _read(out).metadata["rramlib"]["unfinished_runs"] == 0 and not ledger.exists()
    assert _unfinished_note(out) == ""


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


# ----------------------------------------------------------------------------------------------
# one name=value reader for the command line and the book

@pytest.mark.parametrize("text, value", [
    ("2", 2), ("-3", -3), ("0.3", 0.3), ("1e-3", 1e-3), ("True", True), ("false", False), ("None", None),
    ("null", None), ("ibm_pcm", "ibm_pcm"), ("[4, 8]", [4, 8]), ("{rd: 0.3}", {"rd": 0.3}), ("a=b", "a=b"),
])
def test_parse_value(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_parse_assignment_and_its_errors():
    assert parse_assignment("rd=0.3") == ("rd", 0.3)
    assert parse_assignment("table=a=b.csv") == ("table", "a=b.csv")  # only the first '=' splits
    assert parse_assignment("vera_plus.rank=8", dotted=True) == ("vera_plus.rank", 8)
    for bad in ("rd", "=3", "vera_plus.rank=8", "1x=2"):
        with pytest.raises(RramlibError, match="must look like name=value"):
            parse_assignment(bad)
    with pytest.raises(RramlibError, match="cannot read"):
        parse_value("[1, 2")


def test_cli_and_book_read_values_alike():
    for text in ("2", "0.5", "true", "None", "[1, 2]", "ibm_pcm"):
        assert parse_assignment(f"x={text}")[1] == parse_parameter("x", text)[1]


# ----------------------------------------------------------------------------------------------
# tables as the book shows them (rramlib.book.display)

def test_frame_html_drops_the_counter_index_keeps_named_ones_and_full_text():
    import pandas as pd

    claim = "VeRA+ keeps this share of the drift-free accuracy at ten years, averaged over every chip " * 2
    frame = pd.DataFrame({"claim": [claim, "short"], "acc": [0.912345, 0.5], "n": [3, 4]})
    html = frame_html(frame)
    assert claim.strip() in html and "…" not in html and "..." not in html
    assert "<th>0</th>" not in html and "<th>1</th>" not in html and "<th></th>" not in html
    assert "<td>0.912</td>" in html and "<td>0.500</td>" in html and "<td>3</td>" in html
    assert 'class="dataframe rramlib-table"' in html
    assert '<th style="min-width: 24em;">claim</th>' in html and "<th>acc</th>" in html  # long texts get room
    named = frame_html(frame.set_index("n"))
    assert "<th>3</th>" in named and "<th>n</th>" in named  # a named index is data: kept
    shifted = frame_html(frame.iloc[1:])  # not a 0..n-1 counter any more: kept
    assert "<th>1</th>" in shifted


@pytest.mark.parametrize("values, shown", [
    ([0.912345, 0.5], ["0.912", "0.500"]),
    ([0.5, 1.0, 2.0], ["0.5", "1.0", "2.0"]),
    ([1.0, 2.0], ["1", "2"]),
    ([12.345, 3.0], ["12.35", "3.00"]),
    ([1234.5, 99.0], ["1,234", "99"]),
    ([0.00123, 0.0004], ["0.00123", "0.0004"]),
    ([float("nan"), 0.25], ["–", "0.25"]),
])
def test_column_format(values, shown):
    fmt = column_format(values)
    assert [fmt(v) for v in values] == shown


# ----------------------------------------------------------------------------------------------
# pages: code collapsed, raw parameter cells removed, one build box (rramlib.book.present)

def _executed_notebook():
    nb = _new_notebook("x = 1", "print(x)", "secret = 2",
                       parameters="profile = 'quick'   # smoke | quick | paper\nout_dir = 'results'\n"
                                  "drift_scale = 1.0   # multiplies | the drift\nranks = (4, 16)")
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Title\n\nIntro."))
    injected = nbformat.v4.new_code_cell("# Parameters\nprofile = 'smoke'\ndrift_scale = 2.0")
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(2, injected)
    nb.cells[-1].metadata["tags"] = ["remove-input"]  # the author's choice stays
    return nb


def test_present_collapses_code_and_removes_parameter_cells():
    nb = _executed_notebook()
    page = present(nb, "03_x", {"profile": "smoke", "out_dir": "../results", "drift_scale": 2.0}, "smoke",
                   {"drift_scale": 2.0}, seconds=12.34, peak_mb=512.0)
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code", "code", "code"]  # unchanged
    tags = [c.metadata.get("tags", []) for c in page.cells]
    assert page.cells[0].source.startswith("# Title") and "rramlib-build" in tags[1]
    assert "remove-cell" in tags[2] and "remove-cell" in tags[3]  # the notebook's and papermill's
    assert "hide-input" in tags[4] and "hide-input" in tags[5]
    assert tags[6] == ["remove-input"]
    box = page.cells[1].source
    assert box.startswith(":::{admonition} Rerun this page · profile `smoke` · 12.3 s, 512 MB peak memory")
    assert ":class: dropdown" in box and box.rstrip().endswith(":::")
    assert "| `drift_scale` | `2.0` (default `1.0`) | multiplies \\| the drift |" in box
    assert "| `ranks` | `(4, 16)` |  |" in box and "out_dir" not in box
    assert "| `profile` | `'smoke'` (default `'quick'`) | smoke \\| quick \\| paper |" in box
    same = present(nb, "03_x", {"profile": "quick", "ranks": [4, 16]}, "quick", {"ranks": [4, 16]}).cells[1].source
    assert "default" not in same and "| `ranks` | `(4, 16)` |" in same  # a value equal to the default
    assert "papermill notebooks/03_x.ipynb 03_x.ipynb -p profile smoke -p drift_scale 2.0" in box
    assert "rramlib book --profile smoke -p drift_scale 2.0" in box
    assert present(nb, "03_x", {"profile": "smoke"}, "smoke", {}) == present(nb, "03_x", {"profile": "smoke"},
                                                                            "smoke", {})  # deterministic


@pytest.mark.parametrize("value", [2, 0.5, True, None, "ibm_pcm", [2, 8, 32], {"rd": 0.3}, "two words"])
def test_rerun_command_gives_the_parameters_back(value):
    """papermill reads each ``-p`` value of the shown command back as the value this build used."""
    import shlex

    words = shlex.split(rerun_command("05_x", {"profile": "quick", "out_dir": "../results", "v": value}))
    assert words[:3] == ["papermill", "notebooks/05_x.ipynb", "05_x.ipynb"] and "out_dir" not in words
    pairs = dict(zip(words[4::3], words[5::3]))
    assert words[3::3] == ["-p", "-p"] and pairs["profile"] == "quick"
    assert parse_value(pairs["v"]) == value
    assert shlex.split(book_command("quick", {"v": value}))[-1] == pairs["v"]


def test_build_box_without_parameters_or_costs():
    box = build_box("01_x", [], {"profile": "quick"}, "quick", {}, None, None)
    assert "Parameters of this build" not in box and "s," not in box
    assert "papermill notebooks/01_x.ipynb 01_x.ipynb -p profile quick" in box


# ----------------------------------------------------------------------------------------------
# the builder's cache of executed notebooks (a tiny book, no HTML)

_COUNTING = ("import json, pathlib\n"
             "runs = pathlib.Path(counter)\n"
             "runs.write_text(str(int(runs.read_text()) + 1) if runs.exists() else '1')\n"
             "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
             "(pathlib.Path(out_dir) / '{stem}.json').write_text(json.dumps({{'runtime_s': 0.5, 'peak_rss_mb': 10}}))\n"
             "import pandas as pd\n"
             "pd.DataFrame({{'acc': [0.912345, 0.5]}})")


def _tiny_book(tmp_path, counter):
    notebooks, book_dir = tiny_book_dirs(tmp_path)
    for stem in ("01_a", "02_b"):
        nb = _new_notebook(_COUNTING.format(stem=stem),
                           parameters=f"profile = 'quick'\nout_dir = 'results'\ncounter = {str(counter[stem])!r}")
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {stem}"))
        nbformat.write(nb, notebooks / f"{stem}.ipynb")
    return notebooks, book_dir


def test_notebook_cache_reruns_changed_sources_only(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    counter = {stem: tmp_path / f"{stem}.count" for stem in ("01_a", "02_b")}
    notebooks, book_dir = _tiny_book(tmp_path, counter)

    def build():
        result = book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir,
                            log=lambda *a, **k: None)
        return {r.name: r.cached for r in result.runs}, {s: int(c.read_text()) for s, c in counter.items()}

    assert build() == ({"01_a": False, "02_b": False}, {"01_a": 1, "02_b": 1})
    assert build() == ({"01_a": True, "02_b": True}, {"01_a": 1, "02_b": 1})  # unchanged: nothing runs
    page = nbformat.read(tmp_path / "out" / "src" / "notebooks" / "01_a.ipynb", as_version=4)
    seconds = nbformat.read(tmp_path / "out" / "executed" / "01_a.ipynb", as_version=4).metadata["rramlib"]["seconds"]
    assert "rramlib-build" in page.cells[1].metadata["tags"] and "10 MB peak memory" in page.cells[1].source
    assert f"{seconds:.1f} s" in page.cells[1].source  # the builder's wall time of the whole notebook
    table = page.cells[-1].outputs[-1]["data"]["text/html"]  # the kernel showed the table the book's way
    assert "rramlib-table" in table and "<td>0.912</td>" in table and "<th>0</th>" not in table
    nb = _read(notebooks / "02_b.ipynb")
    nb.cells.append(nbformat.v4.new_markdown_cell("A new closing sentence."))
    nbformat.write(nb, notebooks / "02_b.ipynb")
    assert build() == ({"01_a": True, "02_b": False}, {"01_a": 1, "02_b": 2})  # only the changed one
    assert build() == ({"01_a": True, "02_b": True}, {"01_a": 1, "02_b": 2})

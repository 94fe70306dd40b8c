"""rramlib.present.notebook: the notebooks' ``scheduler`` parameter (where their sweeps run) is checked like every
parameter, and left out of the book builder's cache key and pages, since a result does not depend on where it was
computed. The sweeps on a real scheduler are checked in tests/test_cluster.py."""
from __future__ import annotations

import json

import nbformat
import pytest

from rramlib import book
from rramlib.core.errors import RramlibError
from rramlib.present.notebook import check_parameters
from tiny_book import tiny_book_dirs


@pytest.mark.parametrize("address", [None, "tcp://127.0.0.1:8786", "tls://scheduler.example.org:8786", "node7:8786"])
def test_scheduler_addresses_are_accepted(address):
    assert check_parameters({"scheduler": address}) == {"scheduler": address}


@pytest.mark.parametrize("bad", ["", "nonsense", "tcp://", "8786", "host: 8786", 8786, ["tcp://h:1"]])
def test_bad_scheduler_is_refused(bad):
    with pytest.raises(RramlibError, match="scheduler must be the address of a Dask scheduler"):
        check_parameters({"scheduler": bad})


def test_sweeping_notebooks_declare_the_scheduler():
    """Every notebook that sweeps through ``nb.sweep`` declares ``scheduler`` and hands it to ``start``."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "notebooks"
    sweeping = [p for p in book.notebook_paths(root) if "nb.sweep(" in p.read_text()]
    assert sweeping
    for path in sweeping:
        assert "scheduler" in book.declared_parameters(nbformat.read(path, as_version=4)), path.name
        assert "scheduler=scheduler" in path.read_text(), path.name


_NOTEBOOK = ("import json, pathlib\n"
             "runs = pathlib.Path(counter)\n"
             "runs.write_text(str(int(runs.read_text()) + 1) if runs.exists() else '1')\n"
             "pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)\n"
             "(pathlib.Path(out_dir) / '01_a.json').write_text(json.dumps({'runtime_s': 0.5, 'peak_rss_mb': 10}))\n"
             "print('done')")


@pytest.mark.slow
def test_the_build_key_and_page_ignore_the_scheduler(tmp_path, monkeypatch):
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    (notebooks, book_dir), counter = tiny_book_dirs(tmp_path), tmp_path / "runs"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(f"profile = 'quick'\nout_dir = 'results'\ncounter = {str(counter)!r}\n"
                                       "scheduler = None  # a Dask scheduler to run the sweeps on\nshift = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A"), params, nbformat.v4.new_code_cell(_NOTEBOOK)]
    nbformat.write(nb, notebooks / "01_a.ipynb")

    def build(**parameters):
        result = book.build("smoke", tmp_path / "out", html=False, notebooks_dir=notebooks, book_dir=book_dir,
                            parameters=parameters, log=lambda *a, **k: None)
        page = nbformat.read(tmp_path / "out" / "src" / "notebooks" / "01_a.ipynb", as_version=4)
        shown = [c for c in page.cells if "remove-cell" not in c.metadata.get("tags", [])]  # what the HTML shows
        return result.runs[0].cached, int(counter.read_text()), json.dumps(shown)

    assert build(scheduler="tcp://127.0.0.1:8786")[:2] == (False, 1)
    cached, runs, page = build()
    assert (cached, runs) == (True, 1)  # the same results: not executed again without the scheduler ...
    cached, runs, page = build(scheduler="tcp://10.0.0.1:8786")
    assert (cached, runs) == (True, 1)  # ... nor on another one
    assert "10.0.0.1" not in page and "127.0.0.1" not in page  # where it ran is not part of the page
    assert "scheduler" in page and "done" in page  # its default is listed in the box; the outputs are there
    assert build(shift=1)[:2] == (False, 2)  # a parameter the results depend on still runs it again

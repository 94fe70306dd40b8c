"""Chapter scope (rramlib.study.scope): which profile each chapter of a book runs at, and what its page says."""
import json

import nbformat

from rramlib import book
from rramlib.study import scope
from rramlib.book.builder import NOTEBOOK_DIR
from rramlib.study.profiles import PROFILES
from tiny_book import tiny_book_dirs


def test_every_scoped_chapter_and_profile_exists():
    stems = {p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")}
    assert scope.FALLBACK_PROFILE in PROFILES
    for profile, chapters in scope.PROFILE_CHAPTERS.items():
        assert profile in PROFILES
        assert set(chapters) <= stems, set(chapters) - stems
        assert set(chapters.values()) <= set(PROFILES)


def test_chapter_profile():
    assert scope.chapter_profile("cifar", "03_comparison") == "cifar"
    assert scope.chapter_profile("cifar", "05_scheduling") == "cifar_subset"
    assert scope.chapter_profile("cifar", "10_seu") == "quick"
    # a profile without a scope runs every chapter, unknown ones included
    assert scope.chapter_profile("paper", "05_scheduling") == "paper"
    assert scope.chapter_profile("smoke", "99_new") == "smoke"


def test_scoped_chapters():
    assert scope.scoped_chapters("cifar", ["03_comparison", "05_scheduling", "10_seu"]) == ["03_comparison",
                                                                                         "05_scheduling"]
    assert scope.scoped_chapters("quick", ["10_seu", "03_comparison"]) == ["03_comparison", "10_seu"]


def test_side_chapters_share_the_study_scale_base_models():
    """cifar_subset reads cifar's first base model: every field of the model's cache configuration is equal."""
    from rramlib.study.profiles import get_profile
    cifar, subset = get_profile("cifar"), get_profile("cifar_subset")
    for name in ("dataset", "model", "data_seed", "model_seed", "n_calib", "train"):
        assert getattr(cifar, name) == getattr(subset, name), name
    assert subset.base_seeds == cifar.base_seeds[:1]
    assert subset.with_base_seed(cifar.base_seeds[0]).train == cifar.train


def test_builder_runs_out_of_scope_chapters_at_the_fallback_profile(tmp_path, monkeypatch):
    """A two-chapter book at smoke with only 01_a in smoke's scope: 02_b receives profile 'quick', and its page
    says so and still gives the whole-book command at smoke."""
    monkeypatch.setenv("RRAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(scope.PROFILE_CHAPTERS, "smoke", {"01_a": "smoke"})
    notebooks, book_dir = tiny_book_dirs(tmp_path)
    (book_dir / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n- file: notebooks/01_a\n"
                                       "- file: notebooks/02_b\n")
    for name in ("01_a", "02_b"):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        params = nbformat.v4.new_code_cell("profile = 'quick'  # the profile\nout_dir = 'results'  # where")
        params.metadata["tags"] = ["parameters"]
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), params, nbformat.v4.new_code_cell(
            f"from rramlib.present.report import Report\nReport({name!r}, {{'profile': profile}}, out_dir).finish();")]
        nbformat.write(nb, notebooks / f"{name}.ipynb")
    out = tmp_path / "out"
    book.build("smoke", out, html=False, notebooks_dir=notebooks, book_dir=book_dir, log=lambda *a, **k: None)
    results = out / "src" / "results"
    assert json.loads((results / "01_a.json").read_text())["params"]["profile"] == "smoke"
    assert json.loads((results / "02_b.json").read_text())["params"]["profile"] == "quick"
    boxes = {name: next(c.source for c in nbformat.read(out / "src" / "notebooks" / f"{name}.ipynb", 4).cells
                        if "Rerun this page" in c.source) for name in ("01_a", "02_b")}
    assert "profile `smoke`" in boxes["01_a"] and "runs at profile" not in boxes["01_a"]
    assert "Rerun this page · profile `quick`" in boxes["02_b"]
    assert "built at profile `smoke`, this chapter runs at profile `quick`" in boxes["02_b"]
    assert "rramlib book --profile smoke" in boxes["02_b"]

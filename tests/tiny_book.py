"""A one-chapter book folder for builder tests: the scaffold several test files share."""
from __future__ import annotations


def tiny_book_dirs(tmp_path, chapter: str = "01_a"):
    """``(notebooks, book_dir)`` under ``tmp_path``: an empty notebooks folder and a book whose table of contents
    has an intro page and the notebook ``chapter``."""
    notebooks, book_dir = tmp_path / "notebooks", tmp_path / "book"
    notebooks.mkdir()
    book_dir.mkdir()
    (book_dir / "_config.yml").write_text("title: tiny\n")
    (book_dir / "_toc.yml").write_text(f"format: jb-book\nroot: intro\nchapters:\n- file: notebooks/{chapter}\n")
    (book_dir / "intro.md").write_text("# Tiny\n")
    return notebooks, book_dir

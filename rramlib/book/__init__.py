"""Build the companion Jupyter Book: stage, execute the notebooks (papermill, cached), present, build HTML.

``rramlib book --profile smoke|quick|paper`` (and ``make book PROFILE=...``) runs :func:`build`
(:mod:`.builder`); its parts, one job per module:

* :mod:`.parameters`: ``-p NAME VALUE`` (read by :mod:`rramlib.core.params`, the reader the command line
  uses too) and the parameters a notebook declares in its cell tagged ``parameters``. A name no notebook
  declares is refused before anything runs, as are a bad profile and the reserved ``profile``/``out_dir``.
* :mod:`.assets`: the source tree ``<out>/src`` (default ``_build/book/<profile>/src``): the static
  chapters and CSS of ``book/``, ``CITATION.cff`` with its BibTeX (:mod:`.citation`), a local MathJax 3;
  :mod:`.toc` writes a ``_toc.yml`` that lists only the notebooks that exist.
* :mod:`.execute`: every ``notebooks/NN_*.ipynb`` runs in name order with papermill into
  ``<out>/executed/`` (the cache of executed notebooks), with the parameters ``profile`` and
  ``out_dir="../results"`` and the kernel's working directory ``src/notebooks``, so results land in
  ``src/results/``. All kernels share one results cache (``$RRAMLIB_CACHE``, default ``.rramlib_cache``),
  import this checkout's rramlib and show tables the book's way (:mod:`.display`). A notebook is not run
  again when its *build key* (:func:`build_key`: notebook source, parameters, rramlib's sources but the
  builder's, the version, the keys of the notebooks whose results it reads, and for a notebook that shows the
  recorded study-scale build that record -- unless the book is the build it records, whose kernels never read
  it, :mod:`rramlib.study.recorded`) equals the one stored in its executed copy and its results JSON exists
  (``--force`` runs everything); :func:`~rramlib.book.builder.notebook_keys` computes the keys alone.
* :mod:`.checks`: executed outputs are scanned for absolute paths and the host name; glue references
  are checked statically; the HTML must load nothing from another host.
* :mod:`.present`: each executed notebook becomes its page in ``src/notebooks/``: code collapsed behind a
  toggle, the raw parameter cells removed, one box with the build's parameters and the command that
  reruns the page (wall time, peak memory).
* :mod:`.builder`: the steps above in order (first copying the base models a study-scale record ships into the
  results cache, each one checked to be readable by this checkout), ``src/results/build_times.json`` with each
  notebook's wall time and the kernels' numeric environment, the passages of the static pages written from the
  study-scale record (the first page's answer, what the record holds), then Jupyter Book 1.x builds the HTML
  with warnings as errors and without the network.

A notebook that fails stops the build. If it failed on bad input (an :class:`RramlibError` in the
kernel), the build fails exactly as the command line does for the same input: ``error: <message>``
and exit code 2.
"""
from __future__ import annotations

from rramlib.book.assets import ASSETS, mathjax_dir
from rramlib.book.builder import BOOK_DIR, NOTEBOOK_DIR, BuildResult, NotebookRun, build, build_html
from rramlib.book.checks import check_offline, forbidden_strings, glue_references, glued_keys, scan_outputs, unresolved_glue
from rramlib.book.citation import citation_bibtex, zenodo_metadata
from rramlib.book.errors import BookError, NotebookError
from rramlib.book.execute import KEY_VERSION, build_key, execute_notebook, source_files
from rramlib.book.parameters import RESERVED_PARAMETERS, declared_parameters, parse_parameter
from rramlib.book.present import present, rerun_command
from rramlib.book.toc import EXTRA_PART, make_toc, notebook_paths

__all__ = [
    "ASSETS", "BOOK_DIR", "NOTEBOOK_DIR", "EXTRA_PART", "KEY_VERSION", "RESERVED_PARAMETERS",
    "BookError", "NotebookError", "BuildResult", "NotebookRun",
    "build", "build_html", "build_key", "execute_notebook", "source_files", "scan_outputs", "forbidden_strings",
    "check_offline", "glued_keys", "glue_references", "unresolved_glue", "parse_parameter",
    "declared_parameters", "notebook_paths", "make_toc", "present", "rerun_command", "citation_bibtex",
    "zenodo_metadata", "mathjax_dir",
]

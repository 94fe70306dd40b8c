"""How to cite: BibTeX and archive metadata made from ``CITATION.cff`` by libraries, never by hand.

* the software's entry: ``cffconvert`` (the Citation File Format project's converter), which also gives
  the Zenodo metadata that ``.zenodo.json`` must agree with;
* the studies under ``references:`` (which ``cffconvert`` 2 does not convert): ``pybtex`` entries, one
  per reference, ``@article`` when a journal is named, else ``@misc``.
"""
from __future__ import annotations

import re

__all__ = ["software_citation", "citation_bibtex", "zenodo_metadata"]


def software_citation(cff_text: str):
    """The ``cffconvert`` citation of a CITATION.cff text (validated against the CFF schema)."""
    from cffconvert import Citation

    citation = Citation(cff_text)
    citation.validate()
    return citation


def _key(authors: list[dict], year: object, title: str) -> str:
    first = authors[0] if authors else {}
    family = re.sub(r"\W", "", str(first.get("family-names", first.get("name", "anon")))).lower()
    word = re.sub(r"\W", "", (title.split(":")[0].split() or ["x"])[0]).lower()
    return f"{family}{year or ''}{word}"


def _reference_entry(ref: dict):
    from pybtex.database import Entry, Person

    persons = [Person(last=a["family-names"], first=a.get("given-names", "")) if "family-names" in a
               else Person(last="{" + a["name"] + "}") for a in ref.get("authors", [])]
    year = ref.get("year") or str(ref.get("date-released", ""))[:4] or None
    fields = {"title": ref.get("title"), "year": year, "journal": ref.get("journal"), "doi": ref.get("doi"),
              "url": ref.get("url")}
    kind = "article" if ref.get("journal") else "misc"
    return Entry(kind, fields={k: str(v) for k, v in fields.items() if v}, persons={"author": persons})


def citation_bibtex(cff_text: str) -> str:
    """BibTeX for the software and for every study under ``references:`` of a CITATION.cff text."""
    import yaml
    from pybtex.database import BibliographyData

    cff = yaml.safe_load(cff_text)
    software = software_citation(cff_text).as_bibtex()
    year = str(cff.get("date-released", ""))[:4]
    software = software.replace("YourReferenceHere", f"{cff.get('title', 'software').split(':')[0].strip()}{year}",
                                1)
    refs = {}
    for ref in cff.get("references") or []:
        refs[_key(ref.get("authors", []), ref.get("year"), ref.get("title", ""))] = _reference_entry(ref)
    studies = BibliographyData(refs).to_string("bibtex") if refs else ""
    return software.rstrip() + "\n\n" + studies


def zenodo_metadata(cff_text: str) -> dict:
    """The Zenodo deposit metadata ``cffconvert`` derives from a CITATION.cff text."""
    import json

    return json.loads(software_citation(cff_text).as_zenodo())

"""Values typed on a command line: the one reader for ``name=value`` (CLI) and ``-p NAME VALUE`` (book).

A value is read as papermill reads ``-p``: an int, a float, ``true``/``false``, ``none``/``null``, else the
string. A value that starts with ``[`` or ``{`` is read as YAML (``[4, 8]`` gives a list,
``{rd: 0.3}`` a mapping).
"""
from __future__ import annotations

import re

from rramlib.core.errors import RramlibError

__all__ = ["parse_value", "parse_assignment", "check_name"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_value(text: str) -> object:
    """``"2"`` -> 2, ``"0.3"`` -> 0.3, ``"True"`` -> True, ``"None"`` -> None, ``"[4, 8]"`` -> [4, 8],
    anything else -> the string itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if text.strip()[:1] in ("[", "{"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RramlibError(f"cannot read {text!r} as a list or mapping ({exc})") from None
    return text


def _is_name(name: str, dotted: bool) -> bool:
    return all(_NAME.match(part) for part in (name.split(".") if dotted else [name]))


def check_name(name: str, what: str = "parameter", dotted: bool = False) -> str:
    """``name`` if it is a Python identifier (``dotted``: identifiers joined by dots), else RramlibError."""
    if not _is_name(name, dotted):
        raise RramlibError(f"{what} name {name!r} is not a Python identifier")
    return name


def parse_assignment(text: str, what: str = "parameter", example: str = "name=value",
                     dotted: bool = False) -> tuple[str, object]:
    """``"name=value"`` -> ``(name, parse_value(value))``; RramlibError naming ``what`` and ``example``
    when there is no ``=`` or the name is not an identifier (``dotted``: ``method.name`` allowed)."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not _is_name(name, dotted):
        raise RramlibError(f"{what} {text!r} must look like {example}")
    return name, parse_value(value)

"""Base of rramlib's configuration dataclasses: defaults, documentation and checks in one place.

The pattern is peft's ``LoraConfig``/``VeraConfig`` (``peft/tuners/lora/config.py``): a dataclass whose
fields carry their own help, so the command line, the listings and the book's tables show the same text, and
whose ``__post_init__`` validates, so no caller has to remember to.

Convention (every config class in rramlib follows it):

1. A config is a ``@dataclass(frozen=True)`` deriving from :class:`Config`. ``owner`` (a ``ClassVar``) names
   what it configures in error messages: ``"vera_plus"`` gives ``vera_plus.rank must be ...``; an empty
   ``owner`` gives bare field names (``unknown preset 'x'``).
2. Every field is declared as ``name: type = field(default=..., metadata={"help": "...", "choices": (...)})``
   (``default_factory=`` for mutable defaults). ``help`` is one short lower-case phrase, without the default
   (the CLI and tables add it) and without typed lists of names; where the default is ``None``, the help ends
   with what that means: ``"number of evaluation chips (default: the profile's)"``. ``choices`` (optional)
   are the allowed values of a ``str`` field: a tuple, or the registry itself where there is one
   (``"choices": PRESETS``: its keys, read when checked, so later registrations count); ``None`` passes when
   the field's type admits it (``str | None``). A subclass that only changes a default may write
   ``lr: float = 2e-3``: it keeps the help and choices of the base class's field of the same name.
3. Validation runs on construction: ``__post_init__`` calls :meth:`Config.validate`, which checks the declared
   type of ``int``/``float``/``str``/``bool`` fields, then ``choices``, then runs ``_validate`` of every class
   in the hierarchy, base classes first (a subclass adds its own checks there; never override
   ``__post_init__`` or ``validate``). Every failure is one :class:`~rramlib.core.errors.RramlibError` naming
   the field. ``dataclasses.replace`` and :meth:`Config.replace` validate the copy again.
4. :func:`config_fields` lists a config class's fields (name, type, default, help, choices) for tables
   (:func:`config_table`) and the command line: :func:`add_config_option` makes a field an option whose help
   and accepted values come from the metadata (:mod:`rramlib.cli.main`, :mod:`rramlib.cli.train`).
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

from rramlib.core.errors import RramlibError, check_choice, check_type

__all__ = ["FIELD_DEFAULT", "Config", "ConfigField", "add_config_option", "config_field", "config_fields",
           "config_table"]

#: declared type (as a string: annotations are postponed) -> accepted Python types
_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


class ConfigField(NamedTuple):
    """One field of a config class, as :func:`config_fields` describes it."""

    name: str
    type: str
    default: object
    help: str
    choices: tuple | None


def _metadata(cls: type, name: str, key: str):
    """``key`` of field ``name``'s metadata, from the first class in ``cls``'s MRO whose field declares it."""
    for klass in cls.__mro__:
        f = vars(klass).get("__dataclass_fields__", {}).get(name)
        if f is not None and key in f.metadata:
            return f.metadata[key]
    return None


def config_fields(cls: type) -> tuple[ConfigField, ...]:
    """The fields of dataclass ``cls`` (a class or an instance) with their defaults, help and choices."""
    cls = cls if isinstance(cls, type) else type(cls)
    if not dataclasses.is_dataclass(cls):
        raise RramlibError(f"{cls.__name__} is not a config dataclass")
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out.append(ConfigField(f.name, _type_name(f), None if default is dataclasses.MISSING else default,
                               _metadata(cls, f.name, "help") or "", _choices(cls, f.name)))
    return tuple(out)


def _choices(cls: type, name: str) -> tuple | None:
    """Field ``name``'s allowed values (a registry's keys), or None."""
    choices = _metadata(cls, name, "choices")
    return None if choices is None else tuple(choices)


def _type_name(f: dataclasses.Field) -> str:
    """The declared type as written (``"int"``, ``"str | None"``), postponed annotations or not."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def config_field(cls: type, name: str) -> ConfigField:
    """Field ``name`` of config class ``cls`` (unknown name -> RramlibError naming the known ones)."""
    fields = {f.name: f for f in config_fields(cls)}
    return fields[check_choice(f"{cls.__name__} field", name, fields)]


def config_table(cls: type):
    """The fields of ``cls`` as a :class:`pandas.DataFrame` (index: field; columns: default, choices, help)."""
    import pandas as pd

    return pd.DataFrame([{"field": f.name, "default": f.default, "choices": ", ".join(map(str, f.choices or ())),
                          "help": f.help} for f in config_fields(cls)]).set_index("field")


#: ``default`` of :func:`add_config_option`: the field's own default
FIELD_DEFAULT = object()


def add_config_option(parser, flag: str, config: type, name: str, *, default: object = FIELD_DEFAULT,
                      unset: str | None = None, note: str | None = None, **kwargs):
    """Add option ``flag`` for field ``name`` of config class ``config`` to the :class:`argparse.ArgumentParser`
    ``parser``: its help and the values it accepts come from the field's metadata, so the command line shows
    what the code checks. Returns the :class:`argparse.Action`.

    ``default``: the option's default (the field's unless given); ``unset``: what leaving out an option whose
    default is None means (e.g. ``"the profile's"``); ``note``: a phrase added to the help. The values are
    checked by the config, not by argparse (no ``choices=``), so a bad one ends as the config's one clear
    :class:`~rramlib.core.errors.RramlibError`, like any other bad input.
    """
    f = config_field(config, name)
    default = f.default if default is FIELD_DEFAULT else default
    parts = [f.help, *([note] if note else []), *([f"one of: {', '.join(map(str, f.choices))}"] if f.choices else [])]
    shown = unset if default is None else None if isinstance(default, bool) else (
        ",".join(map(str, default)) if isinstance(default, tuple) else default)
    text = "; ".join(parts) + (f" (default: {shown})" if shown is not None else "")
    return parser.add_argument(flag, default=default, help=text.replace("%", "%%"), **kwargs)


@dataclasses.dataclass(frozen=True)
class Config:
    """Frozen hyper-parameters, validated on construction (see the module docstring for the convention)."""

    #: what the values configure, used in error messages (e.g. ``"vera_plus"``; ``""``: bare field names)
    owner: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        self.validate()

    def _label(self, name: str) -> str:
        """Field ``name`` as error messages call it."""
        return f"{self.owner}.{name}" if self.owner else name

    def validate(self):
        """Check every field (declared type, choices, then each class's ``_validate``); return ``self``."""
        for f in dataclasses.fields(self):
            value, declared = getattr(self, f.name), _type_name(f)
            if declared in _TYPES:
                check_type(self._label(f.name), value, _TYPES[declared])
            choices = _choices(type(self), f.name)
            if choices is not None and not (value is None and declared.replace(" ", "").endswith("|None")):
                check_choice(self._label(f.name), value, choices)
        for cls in reversed(type(self).__mro__):
            if "_validate" in vars(cls):
                vars(cls)["_validate"](self)
        return self

    @classmethod
    def from_params(cls, **params):
        """``cls(**params)``, with one clear error naming the unknown keys and the known ones."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise RramlibError(f"unknown parameter(s) {unknown} for {cls.owner!r}; known: {sorted(known)}")
        return cls(**params)

    @classmethod
    def resolve(cls, config: Config | None, fields: dict):
        """``config`` itself, or a new config from keyword ``fields`` (a factory's two ways to be called)."""
        if config is None:
            return cls.from_params(**fields)
        if not isinstance(config, cls):
            raise RramlibError(f"config must be a {cls.__name__}, got {type(config).__name__}")
        if fields:
            raise RramlibError(f"give either a {cls.__name__} or keyword values {sorted(fields)}, not both")
        return config

    def as_dict(self) -> dict:
        """The values by field name (a fresh dict)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def project(self, config_class: type[Config]) -> Config:
        """The ``config_class`` made of this config's fields of the same names (e.g. a method's adapter part)."""
        return config_class(**{f.name: getattr(self, f.name) for f in dataclasses.fields(config_class)})

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

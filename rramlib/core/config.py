"""Base of the hyper-parameter dataclasses (one per adapter and per compensation method).

The pattern is peft's ``LoraConfig``/``VeraConfig``: a frozen dataclass holds the defaults, and its
``__post_init__`` validates them, so every place that builds an adapter or a method (the factory
functions, the controllers, :func:`~rramlib.methods.compensation.make_method`, the CLI's ``--method-param``)
shares one set of defaults and one set of checks. A subclass adds its checks in ``_validate``; the base
runs the ``_validate`` of every class in the hierarchy and checks each field's declared type.
"""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from rramlib.core.errors import RramlibError, check_type

__all__ = ["Config"]

#: declared type (as a string: annotations are postponed) -> accepted Python types
_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool}


@dataclasses.dataclass(frozen=True)
class Config:
    """Frozen, validated hyper-parameters. Build from user input with :meth:`from_params`."""

    #: what the values configure, used in error messages (e.g. ``"vera_plus"``)
    owner: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.type in _TYPES:
                check_type(f"{self.owner}.{f.name}", getattr(self, f.name), _TYPES[f.type])
        for cls in reversed(type(self).__mro__):
            if "_validate" in vars(cls):
                vars(cls)["_validate"](self)

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

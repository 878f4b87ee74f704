"""The one config base: fields that carry their help, dict round trips, CLI options from fields.

Every settings dataclass of speclm (SearchConfig, PreprocessConfig, SimConfig, AgentConfig, …)
declares its fields with :func:`setting` and inherits :class:`Config`, in the style of peft's
configs: the help text lives on the field, ``__post_init__`` validates, ``to_dict``/``from_dict``
round-trip through JSON (training cards, dataset meta), ``from_dict`` refuses unknown keys with
the list of known ones, and :meth:`Config.add_arguments` turns fields into argparse options so a
command never restates a help text by hand. The tools layer holds it because every layer uses it.
"""
from __future__ import annotations

import argparse
from dataclasses import MISSING, asdict, field, fields
from typing import Any

from speclm.tools.errors import ConfigError


def setting(default: Any = MISSING, help: str = "", **kw) -> Any:
    """A dataclass field with its help text (``metadata["help"]``); lists/dicts get a factory."""
    meta = dict(kw.pop("metadata", {}) or {})
    meta["help"] = help
    if isinstance(default, (list, dict, set)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    if default is MISSING:
        return field(metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


class Config:
    """Mixin for ``@dataclass`` settings classes (see the module docstring)."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict | None):
        d = dict(d or {})
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} fields: {unknown}; known: {sorted(known)}")
        return cls(**d)

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, names=None, *, prefix: str = "",
                      override: bool = False) -> None:
        """Add ``--<prefix><name>`` options for the given fields (all simple-typed ones by default),
        with the field's help and default; booleans become ``--name`` / ``--no-name``.
        ``override=True``: every default is None (the option only overrides a value set elsewhere,
        e.g. a preset's). ``args`` values are collected back with :meth:`from_args`."""
        for f in fields(cls):  # type: ignore[arg-type]
            if names is not None and f.name not in names:
                continue
            default = f.default if f.default is not MISSING else None
            kind = type(default) if default is not None else _annotated_kind(f.type)
            if names is None and kind not in (int, float, str, bool):
                continue
            flag = "--" + prefix + f.name.replace("_", "-")
            dest = prefix.replace("-", "_") + f.name
            help_ = f.metadata.get("help", "")
            if override:
                default, help_ = None, help_ + " (default: the preset's)"
            if kind is bool:
                parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=default,
                                    help=help_)
            else:
                parser.add_argument(flag, dest=dest, type=kind, default=default, help=help_)

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, prefix: str = "", **overrides):
        """The config from parsed options made by :meth:`add_arguments` (+ keyword overrides)."""
        vals = {}
        for f in fields(cls):  # type: ignore[arg-type]
            dest = prefix.replace("-", "_") + f.name
            if hasattr(args, dest):
                vals[f.name] = getattr(args, dest)
        vals.update(overrides)
        return cls(**vals)


def _annotated_kind(annotation) -> type:
    """The option type of a field whose default is None, from its annotation ("int | None" -> int)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    for kind in (bool, int, float):
        if kind.__name__ in text.replace("None", "").split("|")[0].strip() or text.strip() == kind.__name__:
            return kind
    return str

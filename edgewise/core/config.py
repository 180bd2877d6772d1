"""Stage configs are frozen dataclasses; this turns them into JSON and back, refusing unknown keys."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from edgewise.core.errors import EdgewiseError

T = TypeVar("T")


def config_to_dict(config: Any) -> dict:
    """A JSON-ready dict of a config dataclass (enums by value, paths as strings)."""
    return {f.name: _to_json(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return config_to_dict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def config_from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build ``cls`` from a dict (a manifest, a YAML recipe); unknown keys are an EdgewiseError."""
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise EdgewiseError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise EdgewiseError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; valid settings are {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {name: _from_json(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise EdgewiseError(f"{where}: {e}") from None


def _from_json(hint: Any, value: Any, where: str) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = options[0] if len(options) == 1 else hint
        origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            accepted = ", ".join(str(m.value) for m in hint)
            raise EdgewiseError(f"{where}: {value!r} is not one of {accepted}") from None
    if hint is Path:
        return Path(value)
    if origin is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def setting(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:  # noqa: A002
    """A config field with its help text, which the CLI reuses for the matching flag."""
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def help_for(cls: type, name: str) -> str:
    """The help text of a config field (for the Click option that sets it)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(f"{cls.__name__} has no field {name!r}")

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


def config_from_dict(cls: type[T], data: dict, where: str = "", base: T | None = None) -> T:
    """Build ``cls`` from a dict (a manifest, a YAML recipe); unknown keys are an EdgewiseError.

    Settings not given keep their defaults: those of ``base`` when given, else the class's. A nested
    config (FinetuneConfig's ``trainer``) given in part keeps the rest of the outer config's default
    for it (fine-tuning's learning rate, not distillation's).
    """
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
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and value is None:
            raise EdgewiseError(f"{where}.{name}: expected a mapping of settings, got nothing (null); give its "
                                f"settings or leave {name} out for its defaults")
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            default = getattr(base, name) if base is not None else _default(fields[name])
            kwargs[name] = config_from_dict(hint, value, f"{where}.{name}", default)
        else:
            kwargs[name] = _from_json(hint, _as_list(hint, value, fields[name].metadata.get("sep"), f"{where}.{name}"),
                                      f"{where}.{name}")
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise EdgewiseError(f"{where}: {e}") from None


def _as_list(hint: Any, value: Any, sep: str | None, where: str) -> Any:
    """A list setting given as its command-line text ("1,8" with the field's separator) or as one value."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
        typing.Union, types.UnionType) else [hint]
    if len(options) != 1 or typing.get_origin(options[0]) is not tuple or isinstance(value, (list, tuple)):
        return value
    if value is None:
        return None
    if not isinstance(value, str) or not sep:
        return [value]
    element = (typing.get_args(options[0]) or (str,))[0]
    parts = [p.strip() for p in value.split(sep) if p.strip()]
    if element in (int, float):
        try:
            return [element(p) for p in parts]
        except ValueError:
            raise EdgewiseError(f"{where}: expected numbers separated by {sep!r}, got {value!r}") from None
    return parts


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def config_from_manifest(cls: type[T], described: dict) -> T:
    """The config a manifest recorded (``{"type", "version", "values"}``), older schema versions
    upgraded by the class's ``upgrade(values, version)``."""
    values, version = described.get("values") or {}, described.get("version", 1)
    if version > getattr(cls, "SCHEMA_VERSION", 1):
        raise EdgewiseError(f"the recorded {cls.__name__} has schema version {version}; this edgewise reads versions "
                            f"up to {getattr(cls, 'SCHEMA_VERSION', 1)}: upgrade edgewise (pip install -U edgewise)")
    if version < getattr(cls, "SCHEMA_VERSION", 1) and hasattr(cls, "upgrade"):
        values = cls.upgrade(dict(values), version)
    return config_from_dict(cls, values, f"{described.get('type', cls.__name__)} (schema {version})")


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
        element = typing.get_args(hint)[0] if typing.get_args(hint) else None
        return tuple(_scalar(element, v, f"{where}[{i}]") for i, v in enumerate(value))
    return _scalar(hint, value, where)


def _scalar(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against a bool / int / float / str setting (a YAML recipe or a manifest gives
    any JSON type); a number given for a text setting (seq_len: 128) becomes its text."""
    if hint is bool and not isinstance(value, bool):
        raise EdgewiseError(f"{where}: expected true or false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise EdgewiseError(f"{where}: expected a whole number, got {value!r}")
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EdgewiseError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise EdgewiseError(f"{where}: expected text, got {value!r}")
    return value


def setting(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None,  # noqa: A002
            aliases: tuple[str, ...] = (), multiple: bool = False, choices: tuple | None = None,
            sep: str | None = None, **kwargs: Any) -> Any:
    """A config field with its help text; the CLI generates the field's option from it.

    Args:
        flag: the option's declaration when it is not ``--field-name``, e.g. "--per-channel/--per-tensor".
        aliases: further names of the option, e.g. ("--lr",) beside --learning-rate.
        multiple: the option may be repeated (a tuple field), e.g. --backend a --backend b.
        choices: the accepted values (shown in --help, checked by Click).
        sep: a tuple field typed as one string split at ``sep``, e.g. "1,8" or the profile "1:4:16".
    """
    metadata = {"help": help, "flag": flag, "aliases": aliases, "multiple": multiple, "choices": choices, "sep": sep}
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


def help_for(cls: type, name: str) -> str:
    """The help text of a config field (for the Click option that sets it)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(f"{cls.__name__} has no field {name!r}")

"""Plain values (TOML, JSON, stored checkpoints, `KEY=VALUE` flags) into typed dataclass configs:
each value checked against its field's annotation, a bad one named in a `ConfigError`."""

from __future__ import annotations

import types
import typing
from dataclasses import fields, is_dataclass

from .errors import ConfigError, InputError

MISMATCH = object()  # what `conform` returns for a value of another type


def conform(value, annotation):
    """`value` as the annotated type (int → float where a float is expected, a dict → the annotated
    dataclass), or `MISMATCH`."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for option in options:
        if is_dataclass(option) and isinstance(value, (dict, option)):
            return value if isinstance(value, option) else from_values(option, value)
        if option is type(None) and value is None:
            return None
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, str):
            return value
        if typing.get_origin(option) is dict and isinstance(value, dict):
            return dict(value)
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            parts = typing.get_args(option)
            if len(parts) == 2 and parts[1] is Ellipsis:  # tuple[int, ...]: any length
                parts = (parts[0],) * len(value)
            if len(value) == len(parts):
                items = tuple(conform(v, t) for v, t in zip(value, parts))
                if MISMATCH not in items:
                    return items
    return MISMATCH


def from_values(cls, values: dict):
    """A config dataclass (e.g. the `frontend` table) from a TOML table or stored dict, each value
    checked; unknown keys are named with the known ones."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(cls)
    checked = {}
    for name, value in values.items():
        checked[name] = conform(value, hints[name])
        if checked[name] is MISMATCH:
            raise ConfigError(f"{name} = {value!r}: expected {type_name(hints[name])}")
    try:
        return cls(**checked)
    except InputError as exc:
        raise ConfigError(str(exc)) from None


def type_name(annotation) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "none"}
    if isinstance(annotation, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(annotation) if a is not type(None))
    if typing.get_origin(annotation) is tuple:
        parts = typing.get_args(annotation)
        return "a list of numbers" if Ellipsis in parts else f"a list of {len(parts)} numbers"
    if is_dataclass(annotation):
        return f"a table of {annotation.__name__} keys"
    if typing.get_origin(annotation) is dict:
        return "a table of KEY = VALUE"
    return names.get(annotation, str(annotation))



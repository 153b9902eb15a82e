"""Frozen-dataclass settings from plain dicts (parsed JSON, bundle metadata): one reader for every config.

Unknown keys are an error naming the known ones, JSON lists become the tuples the dataclasses hold, nested
settings are built by their own reader, and a wrong type is a :class:`~mousecord.errors.ConfigError`, not
a ``TypeError``; each dataclass's ``__post_init__`` then checks the values' ranges.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mousecord.errors import ConfigError

Settings = TypeVar("Settings")


def settings_from_dict(
    cls: type[Settings],
    values: Mapping[str, Any],
    *,
    what: str,
    nested: Mapping[str, Callable[[dict[str, Any]], Any]] | None = None,
) -> Settings:
    """Build the dataclass ``cls`` from a (possibly partial) mapping.

    Args:
        cls: a dataclass whose defaults fill what ``values`` leaves out.
        values: field name -> value; lists (also nested ones) become tuples.
        what: how messages name these settings, e.g. "training settings".
        nested: field name -> reader for fields that are settings themselves, applied to dict values.

    Raises:
        ConfigError: an unknown key, or a value of the wrong type.

    Example:
        >>> @dataclasses.dataclass(frozen=True)
        ... class Tile:
        ...     size: tuple[int, int] = (64, 64)
        >>> settings_from_dict(Tile, {"size": [32, 32]}, what="tile settings")
        Tile(size=(32, 32))
    """
    known = {item.name for item in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known: {sorted(known)}")
    converted = {}
    for key, value in values.items():
        if nested and key in nested and isinstance(value, dict):
            converted[key] = nested[key](value)
        else:
            converted[key] = _tuples(value)
    try:
        return cls(**converted)
    except TypeError as error:
        raise ConfigError(f"invalid {what}: {error}") from error


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


__all__ = ["settings_from_dict"]

"""Plain-data configs from plain dicts: the one strict reader every config dataclass uses.

A config read from YAML, JSON, an HTTP body or a stored session must not let a typo pass
silently: an unknown key is an error naming it (and, where asked, the known ones).

>>> from dataclasses import dataclass
>>> @dataclass
... class Knobs:
...     size: int = 1
>>> from_dict(Knobs, {"size": 3})
Knobs(size=3)
>>> from_dict(Knobs, {"sise": 3}, "knobs")
Traceback (most recent call last):
...
ValueError: unknown knobs: ['sise']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def json_or_word(value: Any) -> Any:
    """A value typed on a command line (``--set KEY=VALUE``): JSON when it parses (numbers, booleans,
    objects), else the word as given; anything not a string unchanged.

    >>> [json_or_word(v) for v in ("3", "true", '{"a": 1}', "first", 2.5)]
    [3, True, {'a': 1}, 'first', 2.5]
    """
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def check_known(cls: type, keys: Iterable[str], what: str, list_known: bool = False) -> None:
    """ValueError ``unknown <what>: [...]`` when ``keys`` has names that are not fields of ``cls``."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(keys) - names)
    if unknown:
        raise ValueError(f"unknown {what}: {unknown}" + (f"; known: {sorted(names)}" if list_known else ""))


def from_dict(cls: type[T], values: Mapping[str, Any] | None, what: str | None = None) -> T:
    """``cls(**values)`` after :func:`check_known` (``what`` defaults to "<cls> fields")."""
    values = dict(values or {})
    check_known(cls, values, what or f"{cls.__name__} fields")
    return cls(**values)

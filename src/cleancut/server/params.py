"""Strict parsing of form values: every malformed value is a 400 naming its field."""

from __future__ import annotations

from ..errors import InvalidParameter

__all__ = ["parse_bool", "parse_int", "pick"]

_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})


def parse_bool(field: str, value: str | bool | None, default: bool = False) -> bool:
    """true/false, 1/0, on/off, yes/no (any case); empty or absent is ``default``."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text == "":
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidParameter(
        field, f"{field} must be true or false (also 1/0, on/off, yes/no); got {value!r:.40}"
    )


def parse_int(field: str, value: str | int | None, default: int | None) -> int | None:
    """A base-10 integer; empty or absent is ``default``. Range checks are the engine's."""
    if value is None:
        return default
    if isinstance(value, bool):
        raise InvalidParameter(field, f"{field} must be an integer")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text == "":
        return default
    if len(text) > 12 or not text.lstrip("+-").isdigit() or not text.isascii():
        raise InvalidParameter(field, f"{field} must be an integer; got {value!r:.40}")
    return int(text)


def pick(*named: tuple[str, str | None]) -> str | None:
    """The value of a field sent under one of its names (long name first, then aliases and the
    short name); names given together must agree."""
    given = [(name, value) for name, value in named if value is not None]
    for name, value in given[1:]:
        if value != given[0][1]:
            raise InvalidParameter(
                named[0][0], f"{given[0][0]} and {name} name the same option and disagree; "
                "send one of them"
            )
    return given[0][1] if given else None

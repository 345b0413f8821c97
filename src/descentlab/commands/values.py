"""Parsing ``K=V`` options from the command line, safely (no eval).

A value is read as, in order: an int, a float, true/false, none, a list
``[a, b]`` or tuple ``(a, b)`` of values, else a string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import UsageError


def parse_value(text: str) -> Any:
    text = text.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if len(text) >= 2 and (text[0], text[-1]) in (("[", "]"), ("(", ")")):
        inner = text[1:-1].strip()
        items = [parse_value(part) for part in inner.split(",") if part.strip()] if inner else []
        return items if text[0] == "[" else tuple(items)
    return text


def parse_pairs(pairs: Sequence[str] | None, flag: str) -> dict[str, Any]:
    """``["lr=0.1", "betas=(0.9,0.99)"]`` -> ``{"lr": 0.1, "betas": (0.9, 0.99)}``."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"invalid {flag} {pair!r}: expected KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out

"""Looking up registry names: one message for an unknown name, with close matches."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


def unknown_name(kind: str, name: str, choices: Iterable[str], aliases: Mapping[str, str] | None = None) -> ValueError:
    """``ValueError("unknown optimizer 'adamm'; did you mean 'adam'? (available: ...)")``."""
    choices = list(choices)
    aliases = dict(aliases or {})
    key = str(name).strip().lower()
    close = difflib.get_close_matches(key, [*choices, *aliases], n=3, cutoff=0.5)
    close = list(dict.fromkeys(aliases.get(c, c) for c in close))
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return ValueError(f"unknown {kind} {name!r}{hint} (available: {', '.join(choices)})")

"""Timed regions and one-time costs: a one-time cost never counts as training time.

Training time — what ``train_seconds`` and a comparison's seconds-to-target
measure — is the time spent inside :func:`timed` regions (the Trainer wraps
each batch's forward, backward and step in one). One-time costs — building
the fused C++ kernels, generating or caching a data set — are wrapped in
:func:`one_time`. Such a cost inside a timed region is a defect: it makes one
strategy look slow for a reason that has nothing to do with it (on a fresh
machine, whichever strategy first needed the kernels paid their build).

So every one-time cost is recorded in :data:`EVENTS` (kind, seconds, whether
it fell inside a timed region), and with ``DESCENTLAB_STRICT_TIMING=1`` in
the environment one inside a timed region raises :class:`TimedOneTimeCost` —
the tests run the commands that way. This instruments the code paths; it does
not rely on measuring how long anything took.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

STRICT_ENV = "DESCENTLAB_STRICT_TIMING"


class TimedOneTimeCost(RuntimeError):
    """A one-time cost (kernel build, data generation) ran inside a timed training region."""


@dataclass(frozen=True)
class Event:
    kind: str
    seconds: float
    in_timed_region: bool


EVENTS: list[Event] = []
_state = threading.local()


def _depth() -> int:
    return getattr(_state, "depth", 0)


def in_timed_region() -> bool:
    return _depth() > 0


@contextlib.contextmanager
def timed() -> Iterator[None]:
    """Mark a region whose time counts as training time."""
    _state.depth = _depth() + 1
    try:
        yield
    finally:
        _state.depth -= 1


@contextlib.contextmanager
def one_time(kind: str) -> Iterator[None]:
    """Mark a one-time cost; inside a timed region it is recorded as such (and
    raises in strict mode, before the cost is paid)."""
    inside = in_timed_region()
    if inside and os.environ.get(STRICT_ENV, "") not in ("", "0"):
        raise TimedOneTimeCost(f"{kind} inside a timed training region: it must happen before timing starts")
    start = time.perf_counter()
    try:
        yield
    finally:
        EVENTS.append(Event(kind, time.perf_counter() - start, inside))


def violations() -> list[Event]:
    """The one-time costs recorded inside timed regions (should be none)."""
    return [e for e in EVENTS if e.in_timed_region]

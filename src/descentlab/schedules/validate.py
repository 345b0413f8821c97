"""Argument checks shared by every schedule, and the errors they raise.

Every message names the argument and its value and says what was expected:
``invalid gamma=-0.5: expected a number >= 0 (schedule 'step')``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any


class ScheduleError(ValueError):
    """An invalid schedule setting: the message names the argument and its value."""


class ScheduleArgumentError(ScheduleError, TypeError):
    """An unknown or missing keyword argument.

    Both a ``TypeError`` (what Python raises for an unexpected keyword) and a
    ``ValueError`` (what every other invalid setting of ``create`` raises), so
    either ``except`` catches it.
    """


def invalid(name: str, value: Any, expected: str, schedule: str | None = None) -> ScheduleError:
    where = f" (schedule {schedule!r})" if schedule else ""
    return ScheduleError(f"invalid {name}={value!r}: expected {expected}{where}")


def is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def integer(name: str, value: Any, schedule: str, *, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``."""
    if not is_int(value) or value < minimum:
        raise invalid(name, value, f"an integer >= {minimum}", schedule)
    return int(value)


def real(
    name: str,
    value: Any,
    schedule: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """``value`` as a finite float within the given bounds (closed unless ``open_*``)."""
    low = "" if minimum is None else f"{'>' if open_min else '>='} {minimum:g}"
    high = "" if maximum is None else f"{'<' if open_max else '<='} {maximum:g}"
    expected = "a finite number" + (" " if low or high else "") + " and ".join(x for x in (low, high) if x)
    if not is_real(value):
        raise invalid(name, value, expected, schedule)
    if minimum is not None and (value < minimum or (open_min and value == minimum)):
        raise invalid(name, value, expected, schedule)
    if maximum is not None and (value > maximum or (open_max and value == maximum)):
        raise invalid(name, value, expected, schedule)
    return float(value)


def choice(name: str, value: Any, options: Sequence[str], schedule: str) -> str:
    if value not in options:
        raise invalid(name, value, "one of " + ", ".join(repr(o) for o in options), schedule)
    return value


def boolean(name: str, value: Any, schedule: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(name, value, "True or False", schedule)
    return value


def per_group_real(name: str, value: Any, schedule: str, *, minimum: float = 0.0) -> float | list[float]:
    """A number, or a list of numbers (one per param group), each >= ``minimum``."""
    if isinstance(value, (list, tuple)):
        if not value:
            raise invalid(name, value, "a number or a non-empty list of numbers (one per param group)", schedule)
        for item in value:
            if not is_real(item) or item < minimum:
                raise invalid(name, value, f"numbers >= {minimum:g} (one per param group)", schedule)
        return [float(v) for v in value]
    return real(name, value, schedule, minimum=minimum)


def pick_group(name: str, value: Any, index: int, n_groups: int, schedule: str) -> Any:
    """The value of a per-group setting for param group ``index`` of ``n_groups``."""
    if isinstance(value, list):
        if len(value) != n_groups:
            raise invalid(
                name, value, f"a number or a list of {n_groups} numbers (one per param group)", schedule
            )
        return value[index]
    return value

"""Comparing strategies side by side: equal budgets, time-to-target, a report."""

from .runner import run_comparison, time_to_target
from .strategy import Strategy, from_file, from_names

__all__ = ["Strategy", "from_file", "from_names", "run_comparison", "time_to_target"]

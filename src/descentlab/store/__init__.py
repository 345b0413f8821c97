"""The run store: every run's configuration and metrics in one database.

``train``, ``compare`` and ``report`` (and later ``tune``) read and write runs
through :class:`RunStore` only; none of them knows the other's files.
"""

from .runs import RunStore, versions

__all__ = ["RunStore", "versions"]

"""The strategy type, re-exported: it lives in :mod:`descentlab.experiment.strategy`, below
the comparison and the benchmark, which both take strategies (docs/architecture.md)."""

from ..experiment.strategy import (  # noqa: F401
    DILOCO, GROUP_SELECTORS, KEYS, Strategy, _number, _unique, coerce, from_file, from_mapping, from_names,
)

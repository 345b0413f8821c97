"""All references, collected from one module per optimizer family."""

from __future__ import annotations

import importlib

from ._common import Reference

FAMILIES = ["sgd", "adam", "adaptive", "factored", "muon", "lion", "trust", "prodigy", "schedulefree",
            "ademamix", "adopt", "mars", "normuon", "soap", "shampoo", "kron"]

REFERENCES: dict[str, Reference] = {}
for _family in FAMILIES:
    _module = importlib.import_module(f"{__name__}.{_family}")
    for _name, _ref in getattr(_module, "REFERENCES", {}).items():
        assert _name not in REFERENCES, f"reference for {_name} defined twice"
        REFERENCES[_name] = _ref

__all__ = ["REFERENCES", "Reference"]

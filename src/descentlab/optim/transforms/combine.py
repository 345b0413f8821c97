"""Placeholder: combinators (per-group branches), filled in with Muon."""

__all__: list[str] = []

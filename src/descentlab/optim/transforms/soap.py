"""Placeholder: filled in by issue 33 (soap)."""

__all__: list[str] = []

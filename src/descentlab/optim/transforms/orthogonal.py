"""Placeholder: filled in by the orthogonal work."""

__all__: list[str] = []

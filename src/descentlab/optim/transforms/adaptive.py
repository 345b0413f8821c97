"""Placeholder: filled in by the adaptive work."""

__all__: list[str] = []

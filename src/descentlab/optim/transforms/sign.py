"""Placeholder: filled in by the sign work."""

__all__: list[str] = []

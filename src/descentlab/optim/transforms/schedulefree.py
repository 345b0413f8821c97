"""Placeholder: filled in by the schedulefree work."""

__all__: list[str] = []

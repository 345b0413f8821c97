"""Placeholder: filled in by the prodigy work."""

__all__: list[str] = []

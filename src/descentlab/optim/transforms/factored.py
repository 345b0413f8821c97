"""Placeholder: filled in by the factored work."""

__all__: list[str] = []

"""Placeholder: filled in by the trust work."""

__all__: list[str] = []

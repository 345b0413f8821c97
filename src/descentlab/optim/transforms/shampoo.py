"""Placeholder: filled in by issue 33 (shampoo)."""

__all__: list[str] = []

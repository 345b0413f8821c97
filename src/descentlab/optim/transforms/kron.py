"""Placeholder: filled in by issue 33 (kron)."""

__all__: list[str] = []

"""Placeholder: filled in by the factored work."""

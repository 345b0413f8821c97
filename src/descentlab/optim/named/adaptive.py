"""Placeholder: filled in by the adaptive work."""

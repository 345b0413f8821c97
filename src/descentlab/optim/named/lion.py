"""Placeholder: filled in by the lion work."""

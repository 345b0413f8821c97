"""Placeholder: filled in by the prodigy work."""

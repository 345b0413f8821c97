"""Placeholder: filled in by the trust work."""

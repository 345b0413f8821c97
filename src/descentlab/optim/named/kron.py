"""Placeholder: filled in by issue 33 (kron)."""

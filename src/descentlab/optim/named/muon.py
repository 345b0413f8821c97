"""Placeholder: filled in by the muon work."""

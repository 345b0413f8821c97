"""Placeholder: filled in by the schedulefree work."""

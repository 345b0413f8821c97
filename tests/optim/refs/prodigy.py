"""References for the prodigy family (filled in with its optimizers)."""

REFERENCES: dict = {}

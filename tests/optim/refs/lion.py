"""References for the lion family (filled in with its optimizers)."""

REFERENCES: dict = {}

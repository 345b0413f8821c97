"""References for the adaptive family (filled in with its optimizers)."""

REFERENCES: dict = {}

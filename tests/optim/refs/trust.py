"""References for the trust family (filled in with its optimizers)."""

REFERENCES: dict = {}

"""References for the schedulefree family (filled in with its optimizers)."""

REFERENCES: dict = {}

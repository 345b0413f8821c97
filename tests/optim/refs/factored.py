"""References for the factored family (filled in with its optimizers)."""

REFERENCES: dict = {}

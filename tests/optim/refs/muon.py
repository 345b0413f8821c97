"""References for the muon family (filled in with its optimizers)."""

REFERENCES: dict = {}

"""Reference for shampoo (issue 33): filled in with the optimizer."""

REFERENCES: dict = {}

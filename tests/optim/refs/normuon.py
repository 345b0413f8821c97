"""Reference for normuon (issue 33): filled in with the optimizer."""

REFERENCES: dict = {}

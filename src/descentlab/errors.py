"""Errors that reach the user as one line (exit status 2 from the CLI)."""


class UsageError(ValueError):
    """Bad input from the user: a flag, a value, a configuration file."""

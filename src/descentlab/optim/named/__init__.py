"""The named optimizers; importing this package registers them all, in the
order of ``descentlab list optimizers``."""

from . import sgd, adam, adaptive, factored, muon, lion, trust, prodigy, schedulefree  # noqa: F401

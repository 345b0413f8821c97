"""The named optimizers; importing this package registers them all, in the
order of ``descentlab list optimizers``."""

from . import sgd, adam, adaptive, factored, muon, lion, trust, prodigy, schedulefree  # noqa: F401
from . import ademamix, adopt, mars, normuon, soap, shampoo, kron  # noqa: F401  (issue 33)

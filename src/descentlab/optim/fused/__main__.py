"""``python -m descentlab.optim.fused``: build the C++ kernels now (``make`` runs it at install)."""

from .build import main

raise SystemExit(main())

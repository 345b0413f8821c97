"""Reference for muon: torch.optim.Muon, on 2-D weights only (it takes nothing
else). The AdamW fallback for other shapes is tested against torch.optim.AdamW
in tests/optim/test_muon.py."""

import torch

from ._common import Reference

#: Our hyperparameters that torch.optim.Muon does not have: the AdamW fallback's,
#: and the N-D / split options (tested against torch.optim.Muon on flattened views
#: and on separate blocks in tests/optim/test_muon.py).
FALLBACK = ("adamw_lr", "adamw_betas", "adamw_eps", "adamw_weight_decay")
OURS_ONLY = ("nd", "split")


def _muon(groups, **hp):
    for key in FALLBACK:
        hp.pop(key, None)
    assert hp.pop("nd") == "adamw" and hp.pop("split") is None, "torch.optim.Muon has neither"
    return torch.optim.Muon(groups, **hp)


_VARIANTS = [
    {"lr": 0.02, "momentum": 0.9, "nesterov": False},
    {"lr": 0.01, "weight_decay": 0.01, "adjust_lr_fn": "match_rms_adamw"},
    {"lr": 0.005, "ns_steps": 3, "ns_coefficients": (3.0, -3.2, 1.2), "eps": 1e-5, "adjust_lr_fn": "original"},
    {"lr": 0.03, "weight_decay": 0.0, "momentum": 0.5},
]

REFERENCES = {
    "muon": Reference(
        _muon,
        _VARIANTS,
        {"momentum_buffer": "momentum_buffer"},
        descent={"lr": 0.02},
        params="matrix",
    ),
}

"""Reference for normuon: pytorch_optimizer.NorMuon (4.1.0), per-tensor path.

The reference needs ``use_muon`` in every group; the factory splits each of our
groups as ``optim.create`` does (matrices: NorMuon with the group's lr; vectors:
its AdamW groups with the adamw_* values). Its multi-tensor path (``foreach``)
batches equal shapes into one bmm Newton–Schulz, whose bfloat16 rounding is not
its per-matrix path's; the per-matrix path is the reference for both of ours.
"""

from pytorch_optimizer import NorMuon

from ._common import Reference

#: Our hyperparameters that NorMuon does not take: what goes where (nd), and
#: the Newton–Schulz ε, fixed at 1e-7 in the reference.
OURS_ONLY = ("nd", "ns_eps")


def _normuon(groups, **hp):
    nd = hp.pop("nd")
    assert hp.pop("ns_eps") == 1e-7, "the reference's Newton–Schulz eps is fixed at 1e-7"
    ref_groups = []
    for group in groups:
        own = {k: v for k, v in group.items() if k != "params"}
        params = list(group["params"])
        muon = [p for p in params if p.ndim == 2 or (p.ndim > 2 and nd == "flatten")]
        rest = [p for p in params if not any(p is q for q in muon)]
        if muon:
            ref_groups.append({"params": muon, "use_muon": True, **own})
        if rest:
            ref_groups.append({"params": rest, "use_muon": False})
    return NorMuon(ref_groups, foreach=False, **hp)


_VARIANTS = [
    {"lr": 0.01, "momentum": 0.9, "nesterov": False, "beta2": 0.9},
    {
        "lr": 0.02,
        "weight_decay": 0.05,
        "adamw_wd": 0.01,
        "adamw_lr": 1e-3,
        "adamw_betas": (0.8, 0.99),
        "adamw_eps": 1e-8,
    },
    {"update_scale": "match_rms", "lr": 0.01, "weight_decay": 0.1, "maximize": True},
    {"use_adjusted_lr": True, "ns_coeffs": "quintic", "eps": 1e-8, "maximize": True},
    {"weight_decouple": False, "weight_decay": 0.01, "adamw_wd": 0.02, "ns_coeffs": (3.0, -3.2, 1.2), "ns_steps": 3},
    {"ns_coeffs": "polar_express", "ns_steps": 8, "beta2": 0.5},
]

REFERENCES = {
    "normuon": Reference(
        _normuon,
        _VARIANTS,
        {
            "momentum_buffer": "momentum_buffer",
            "second_momentum_buffer": "second_momentum_buffer",
            "exp_avg": "exp_avg",
            "exp_avg_sq": "exp_avg_sq",
        },
        descent={"lr": 0.02},
        note=(
            "pytorch_optimizer.NorMuon with foreach=False; groups split into use_muon=True "
            "(2-D, and N-D under nd='flatten') and use_muon=False (AdamW with the adamw_* values). "
            "Its Newton–Schulz runs in bfloat16 whatever the dtype, but our momentum and iteration "
            "are its operations in its order, so the bfloat16 inputs and outputs are bitwise its own "
            "and float64 agrees to ~1e-15 (rtol64 stays 1e-9); the Frobenius norms of the "
            "normalization are sums of row sums (bitwise equal on FSDP2 shards), not its norm(): "
            "float32 rounding only (<= 2e-6 over 100 steps)."
        ),
    ),
}

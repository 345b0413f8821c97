"""Reference for soap: pytorch_optimizer.SOAP (4.1.0) as it is.

The matrix's shapes (6×5, 6, 3×6, 3) cannot take ``merge_dims=True`` (the
reference raises on a tensor whose dimensions all merge into one, e.g. every
1-D tensor); merging, channels_last and 3-D/4-D tensors are compared in
tests/optim/test_soap.py.
"""

from pytorch_optimizer import SOAP

from ._common import Reference


def _soap(groups, **hp):
    return SOAP(groups, **hp)


_VARIANTS = [
    # Weight decay, other betas and shampoo_beta, a refresh every 3 steps.
    {"lr": 0.01, "betas": (0.9, 0.99), "shampoo_beta": 0.9, "weight_decay": 0.1, "precondition_frequency": 3},
    # max_precondition_dim=5: 6×5 keeps dim 0 and 3×6 dim 1 in their own coordinates;
    # the 3-vector is preconditioned (precondition_1d), the 6-vector is not.
    {"maximize": True, "precondition_1d": True, "max_precondition_dim": 5, "correct_bias": False, "eps": 1e-6},
    # A refresh at every step, normalized direction, no decay.
    {"normalize_gradient": True, "weight_decay": 0.0, "betas": (0.8, 0.9), "precondition_frequency": 1},
    # No preconditioned dimension at all (Adam after the first step), with decay.
    {"lr": 0.002, "max_precondition_dim": 1, "weight_decay": 0.05, "precondition_frequency": 7},
    # A long period (no refresh before step 40), channels_last (inert without merge_dims).
    {"precondition_frequency": 40, "data_format": "channels_last", "shampoo_beta": 0.5, "eps": 1e-4},
]

REFERENCES = {
    "soap": Reference(
        _soap,
        _VARIANTS,
        {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
        descent={"lr": 0.05},
    ),
}

"""Reference for adamw_schedulefree: schedulefree.AdamWScheduleFree (1.4.1)."""

import schedulefree

from ._common import Reference


def _negate_grads(opt, args, kwargs):
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.neg_()


def _adamw_schedulefree(groups, maximize=False, **hp):
    opt = schedulefree.AdamWScheduleFree(groups, **hp)
    # The reference starts in eval mode and refuses to step before .train();
    # ours starts in train mode.
    opt.train()
    if maximize:
        # It has no maximize: ours negates the gradient first, so does this hook.
        opt.register_step_pre_hook(_negate_grads)
    return opt


_VARIANTS = [
    {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6},
    {"lr": 0.01, "weight_decay": 0.1, "warmup_steps": 10},
    {"lr": 0.005, "r": 1.0, "weight_lr_power": 1.0, "weight_decay": 0.01},
    {"lr": 0.02, "warmup_steps": 30, "weight_lr_power": 0.0, "maximize": True},
]

REFERENCES = {
    "adamw_schedulefree": Reference(
        _adamw_schedulefree,
        _VARIANTS,
        {"z": "z", "exp_avg_sq": "exp_avg_sq"},
        descent={"lr": 0.05},
        note="the reference is switched to train mode (.train()) right after it is built",
    ),
}

"""Schedule-free AdamW: no learning-rate schedule, an average of the iterates instead.

adamw_schedulefree = schedule_free_adamw_step (which produces the step; see
:class:`descentlab.optim.transforms.ScheduleFreeAdamWStep` for the update rule
and the train/eval modes: call ``optimizer.eval()`` before evaluating or saving
and ``optimizer.train()`` before training again). It starts in train mode; a
step in eval mode raises RuntimeError.

Its own ``weight_decay`` is the reference's (taken at y, inside the averaged
update); the universal ``l2`` and ``decoupled_decay`` of ``optim.create`` act on
the gradient and on y only, and are not part of the reference.
"""

from __future__ import annotations

from ..registry import OptimizerSpec, register
from ..transforms import schedule_free_adamw_step


def _adamw_schedulefree_chain():
    """The schedule-free step; its weight_decay (taken at y) is inside it."""
    return [schedule_free_adamw_step()]


register(
    OptimizerSpec(
        name="adamw_schedulefree",
        summary="Schedule-free AdamW: averages iterates instead of decaying lr; needs .train()/.eval()",
        defaults={
            "lr": 0.0025,
            "betas": (0.9, 0.999),
            "eps": 1e-8,
            "weight_decay": 0.0,
            "warmup_steps": 0,
            "r": 0.0,
            "weight_lr_power": 2.0,
        },
        build=_adamw_schedulefree_chain,
        reference="schedulefree.AdamWScheduleFree (1.4.1)",
        paper=(
            "Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, 'The Road Less Scheduled', "
            "NeurIPS 2024"
        ),
    )
)

"""`masked`: apply a transform to some parameters only."""

from __future__ import annotations

from ..base import Transform
from ..masks import Rule, names_by_id, selector

__all__ = ["Masked", "masked"]


class Masked(Transform):
    """Apply ``inner`` to the parameters that ``mask`` selects; pass the others through.

    ``mask`` is a rule of :mod:`descentlab.optim.masks`: ``"auto"`` (ndim ≤ 1),
    name patterns (with named parameters), or ``(name, param) -> bool``. E.g.
    weight decay for matrices only::

        chain(model.named_parameters(), scale_by_adam(),
              masked(add_decayed_weights(weight_decay=0.1), lambda n, p: p.ndim >= 2))

    The inner transform's state is created only for selected parameters (the
    optax ``masked`` wrapper, done per parameter group).
    """

    def __init__(self, inner: Transform, mask: Rule):
        super().__init__()
        self.inner = inner
        self.select = selector(mask, "mask")
        self.defaults = dict(inner.defaults)

    def __repr__(self) -> str:
        return f"Masked({self.inner!r})"

    def children(self):
        return (self.inner,)

    def validate(self, group):  # the chain validates the inner transform itself
        pass

    def init_state(self, p, state, group):
        if self.select(names_by_id(group).get(id(p)), p):
            self.inner.init_state(p, state, group)

    def update(self, updates, params, states, group, foreach):
        names = names_by_id(group)
        chosen = [i for i, p in enumerate(params) if self.select(names.get(id(p)), p)]
        if not chosen:
            return updates
        inner = self.inner.update(
            [updates[i] for i in chosen], [params[i] for i in chosen], [states[i] for i in chosen], group, foreach
        )
        out = list(updates)
        for i, u in zip(chosen, inner):
            out[i] = u
        return out


masked = Masked

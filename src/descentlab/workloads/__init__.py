"""Built-in training problems: data, model, loss and metric, offline and seeded.

    >>> from descentlab import workloads
    >>> workloads.available()
    ['linreg', 'diabetes', 'digits-mlp', 'digits-cnn', 'mnist1d-logreg', 'mnist1d-mlp', ...]
    >>> w = workloads.load("mnist1d-cnn", seed=0)
    >>> x, y = w.train                       # float32 inputs, int64 labels
    >>> torch.manual_seed(0); model = w.make_model()
    >>> loss = w.loss_fn(model(x), y)
    >>> w.metric, w.metric_fn(model(w.test[0]), w.test[1])
    >>> w.recipe                             # what `descentlab train --workload` runs
    >>> w.default_lr("lion")                 # per-optimizer default lr on this workload
    >>> for xb, yb in w.batches("train", 100): ...

The seed fixes the data: the train/val/test split and, for synthetic data,
the draw. It never touches a global generator; the model's initialisation is
the caller's (``torch.manual_seed`` before ``make_model()``).

==============  ==================================================  ==========
name            data                                                metric
==============  ==================================================  ==========
linreg          synthetic y = Xw + b + noise, 1000 x 10              r2
diabetes        scikit-learn diabetes, 442 x 10                      r2
digits-mlp      scikit-learn digits, 1797 8x8 images                 accuracy
digits-cnn      the same, as (N, 1, 8, 8) for a CNN                  accuracy
mnist1d-logreg  MNIST-1D (mnist1d package, generated), 4000 / 1000   accuracy
mnist1d-mlp     the same, MLP 40-100-100-10                          accuracy
mnist1d-cnn     the same, Greydanus's 3-layer CNN                    accuracy
mnist-cnn       MNIST from IDX files in ``data_dir``                 accuracy
charlm          torch's Python sources (or data_dir/input.txt),      bpc (min)
                character-level transformer LM
==============  ==================================================  ==========

and the ``families`` suite's, one small workload per AlgoPerf workload family
(:mod:`.families`): digits-resnet, digits-vit, charlm-tiny, translate,
molgraph, clicks, digits-unet, mnist1d-ctc.

A user's own problem: ``workloads.load("path/to/file.py:FUNC")`` or
``"package.module:FUNC"``, where ``FUNC(seed=0)`` returns a :class:`Workload`
(see :mod:`.user` and docs/your-own-problem.md); installed packages add names
through the entry-point group ``descentlab.workloads``.
"""

# Registration order is listing order: the simplest problems first.
from . import synthetic, sklearn_data, mnist1d, mnist, charlm  # noqa: F401,I001  (register the workloads)
from . import families  # noqa: F401,I001  (the families suite's: one per AlgoPerf workload family)
from .base import DEFAULT_RECIPE, SPLITS, Split, Workload, num_examples
from .batches import Batches
from .cache import cache_dir
from .idx import IdxError, read_idx, write_idx
from .metrics import METRICS, Metric, accuracy, mse, perplexity, r2, resolve_metric
from .registry import WorkloadSpec, available, get, load, register, resolve, summaries
from .user import ENTRY_POINT_GROUP

__all__ = [
    "DEFAULT_RECIPE",
    "ENTRY_POINT_GROUP",
    "METRICS",
    "SPLITS",
    "Batches",
    "IdxError",
    "Metric",
    "Split",
    "Workload",
    "WorkloadSpec",
    "accuracy",
    "available",
    "cache_dir",
    "get",
    "load",
    "mse",
    "num_examples",
    "perplexity",
    "r2",
    "read_idx",
    "register",
    "resolve",
    "resolve_metric",
    "summaries",
    "write_idx",
]

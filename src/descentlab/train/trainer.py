"""The Trainer: a plain PyTorch training loop with callbacks around it.

The inner loop is what one would write by hand — forward, loss, backward,
(clip), step, schedule — so a reader can hold it in their head (nanoGPT's
lesson). Everything else (early stopping, checkpoints, logging, progress,
diagnostics) is a callback that hooks around it, never into it.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..distributed import strategy as strategies
from ..optim.fused.build import prepare as prepare_kernels
from ..timing import timed
from . import checkpoint as ckpt
from .batch import batch_len, forward, logits_of, targets_of, to_device
from .best import BestTracker
from .callbacks import Callback
from .data import as_batches, check_batch_size, eval_loader, is_map_dataset
from .history import History

PRECISIONS = ("fp32", "bf16", "fp16")


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss (on_nonfinite="raise")."""


def _choose_device(device: str | torch.device) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"invalid device={str(device)!r}: CUDA is not available on this machine")
    return device


def _check_clip(clip: Mapping[str, float] | None) -> dict[str, float]:
    clip = dict(clip or {})
    unknown = set(clip) - {"norm", "value", "agc"}
    if unknown:
        raise ValueError(f"invalid clip key(s) {sorted(unknown)}: expected 'norm', 'value' or 'agc'")
    for key, value in clip.items():
        if not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
            raise ValueError(f"invalid clip {key}={value!r}: expected a finite number > 0")
    return clip


class Trainer:
    """Train ``model`` with ``optimizer`` on ``loss_fn``.

    Batches are tuples ``(inputs, targets)`` or dicts (Hugging Face style);
    ``loss_fn=None`` means the model returns its own loss (see
    :mod:`descentlab.train.batch`). ``train`` and ``val`` given to :meth:`fit`
    are tensors ``(x, y)`` or map-style Datasets (batched here, in a seeded,
    resumable order) or any iterable of batches (a DataLoader).

    Args:
        scheduler: a ``torch.optim.lr_scheduler`` stepped once per optimizer
            step (``ReduceLROnPlateau`` / the "plateau" schedule: after each
            validation, with the monitored value).
        callbacks: :class:`Callback` objects (EarlyStopping, Diagnostics, ...).
        batch_size: int, 1 or "full" when ``train`` is tensors ``(x, y)``.
        accumulate: gradient accumulation: one optimizer step per this many batches.
        clip: ``{"norm": c}`` (global L2 norm, torch's clip_grad_norm_),
            ``{"value": c}`` and/or ``{"agc": λ}`` (adaptive clipping).
        precision: "fp32", "bf16" (autocast on CPU and GPU), or "fp16" (GPU
            only, with a GradScaler).
        device: "auto" (CUDA when present), "cpu", "cuda", ...
        seed: seeds the model-independent randomness (data order, dropout).
        metrics: extra ``name -> fn(outputs, targets) -> float`` for evaluate()
            (a function with ``from_loss = True``, e.g. perplexity, gets the
            mean evaluation loss instead).
        monitor / mode: the validation value that defines "best" ("val_loss",
            "min" by default); shared by EarlyStopping and best checkpoints.
        eval_every: validate every this many steps (default: every epoch).
        checkpoint_dir / checkpoint_every: write a checkpoint every N steps
            (and at the end); ``resume=True`` continues from the newest valid one.
        on_nonfinite: "raise" (stop with a message naming the step) or "skip"
            (skip the step; stop after ``max_skips`` consecutive skips).
        log_every: record the training loss every N steps.
        distributed: train data-parallel in the initialized ``torch.distributed``
            process group (``descentlab train --nproc N``, or torchrun; under
            torchrun without a group the Trainer joins one from torchrun's
            environment, so a script runs under torchrun as it is): the model
            trains through DistributedDataParallel, each process reads only rows
            ``rank::world`` of every (global) batch, and only rank 0 writes
            checkpoints. Implied when ``model`` is already a DistributedDataParallel.
            A model sharded with FSDP2's ``fully_shard`` trains as it is (FSDP
            averages the gradients); an optimizer with ``averages_parameters``
            (DiLoCo) keeps the processes together itself, so the model is not
            wrapped; a ``ZeroRedundancyOptimizer`` shards the optimizer state.
            Checkpoints are gathered into the one-process format in every case
            (see :mod:`descentlab.distributed.strategy`).
        find_unused_parameters: parameters that get no gradient (an unused head,
            a branch switched off) train under DDP either way. False (default):
            DDP's ``static_graph``, which finds them in the first step, for models
            that use the same parameters every step. True: DDP's option of that
            name, which looks for them every step (one walk of the autograd graph
            per step), for models whose set changes from step to step; also
            taken with ``accumulate > 1`` (static_graph does not support no_sync).
        comm_hook: a DDP communication hook by name ("allreduce", "bf16", "fp16",
            "powersgd"; :mod:`descentlab.distributed.hooks`).
        target_key: the targets' key in dict batches (default: the first of
            labels, label, targets, target, y present).
        num_workers: DataLoader workers for map-style Datasets.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any, Any], Tensor] | None,
        *,
        scheduler: Any = None,
        callbacks: Sequence[Callback] = (),
        batch_size: int | str | None = None,
        accumulate: int = 1,
        clip: Mapping[str, float] | None = None,
        precision: str = "fp32",
        device: str | torch.device = "auto",
        seed: int = 0,
        metrics: Mapping[str, Callable[[Tensor, Tensor], float]] | None = None,
        monitor: str = "val_loss",
        mode: str = "min",
        eval_every: int | None = None,
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        keep_checkpoints: int = 2,
        resume: bool = False,
        on_nonfinite: str = "raise",
        max_skips: int = 10,
        log_every: int = 1,
        distributed: bool = False,
        comm_hook: str | None = None,
        find_unused_parameters: bool = False,
        target_key: str | None = None,
        num_workers: int = 0,
    ):
        if batch_size is not None:
            check_batch_size(batch_size)
        for name, value in (("accumulate", accumulate), ("log_every", log_every), ("max_skips", max_skips)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid {name}={value!r}: expected an integer >= 1")
        for name, value in (("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"invalid {name}={value!r}: expected an integer >= 1 or None")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"invalid num_workers={num_workers!r}: expected an integer >= 0")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"invalid loss_fn={loss_fn!r}: expected a callable (outputs, targets) -> loss, or None")
        if precision not in PRECISIONS:
            raise ValueError(f"invalid precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
        if on_nonfinite not in ("raise", "skip"):
            raise ValueError(f"invalid on_nonfinite={on_nonfinite!r}: expected 'raise' or 'skip'")
        self.device = _choose_device(device)
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("invalid precision='fp16' on CPU: fp16 needs a GPU; use 'bf16' on CPU")
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs a checkpoint_dir")

        # Data parallel: the training forward goes through the DDP wrapper (which
        # averages the gradients across processes); everything else (evaluation,
        # checkpoints, callbacks) sees the plain module, as in one process.
        wrapper = model if isinstance(model, DistributedDataParallel) else None
        self.model = (wrapper.module if wrapper is not None else model).to(self.device)
        self.train_model = self.model
        self.rank, self.world = 0, 1
        if wrapper is not None or distributed:
            if not (dist.is_available() and dist.is_initialized()):
                _join_from_environment(self.device)
            self.rank, self.world = dist.get_rank(), dist.get_world_size()
            if wrapper is None and (strategies.is_fsdp(self.model) or strategies.averages_parameters(optimizer)):
                wrapper = self.model  # FSDP averages the gradients itself; DiLoCo the parameters
            elif wrapper is None:
                cuda = self.device.type == "cuda"
                index = self.device.index if self.device.index is not None or not cuda else torch.cuda.current_device()
                # A parameter that gets no gradient (a head the loss does not use) would stop the
                # next step with torch's "Expected to have finished reduction". static_graph: DDP
                # finds the unused parameters in the first step and reduces without them after
                # (the Trainer's step is the same graph every time); find_unused_parameters=True
                # walks the autograd graph every step instead, for models whose set changes, and
                # under accumulation, whose no_sync micro-steps static_graph does not support
                # (torch 2.13: "expect_autograd_hooks_ INTERNAL ASSERT FAILED").
                dynamic = find_unused_parameters or accumulate > 1
                wrapper = DistributedDataParallel(self.model, device_ids=[index] if cuda else None,
                                                  find_unused_parameters=dynamic, static_graph=not dynamic)
            if comm_hook is not None:
                if not isinstance(wrapper, DistributedDataParallel):
                    raise ValueError(f"invalid comm_hook={comm_hook!r}: communication hooks are DDP's, "
                                     "and this model trains without DDP (FSDP or DiLoCo)")
                from ..distributed.hooks import register

                register(wrapper, comm_hook)
            self.train_model = wrapper
        # each process's own loss (DiLoCo): no weighting by the share of the global batch
        self._own_loss = strategies.averages_parameters(optimizer)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.target_key, self.num_workers = target_key, num_workers
        self.scheduler = scheduler
        self.callbacks = list(callbacks)
        self.batch_size, self.accumulate = batch_size, accumulate
        self.clip = _check_clip(clip)
        self.precision, self.seed = precision, seed
        self.metrics = dict(metrics or {})
        self.best = BestTracker(monitor, mode)
        self.eval_every = eval_every
        self.checkpoint_dir, self.checkpoint_every = checkpoint_dir, checkpoint_every
        self.keep_checkpoints, self.resume = keep_checkpoints, resume
        self.on_nonfinite, self.max_skips, self.log_every = on_nonfinite, max_skips, log_every
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.history = History()
        # Loop position, part of every checkpoint.
        self.step = self.epoch = self.batch_in_epoch = 0
        self.skipped = self.consecutive_skips = 0
        self.train_seconds = 0.0
        # wall time of fit(): before this fit (a resumed checkpoint's, earlier fits) and since it began
        self._wall_before, self._wall_start = 0.0, None
        self.should_stop = False
        self.stop_reason = ""
        self.last_grad_norm: float | None = None
        self.last_loss = math.nan
        self._loss_sum = 0.0

    # -- the loop --------------------------------------------------------------

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def fit(self, train: Any, val: Any = None, *, epochs: int | None = None, max_steps: int | None = None) -> History:
        """Train for ``epochs`` epochs or ``max_steps`` optimizer steps, whichever comes first."""
        for name, value in (("epochs", epochs), ("max_steps", max_steps)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"invalid {name}={value!r}: expected an integer >= 1")
        if epochs is None and max_steps is None:
            raise ValueError("fit() needs epochs= or max_steps=")
        fit_start = time.perf_counter()  # wall time counts from here (start-up and resume included)
        batches = as_batches(train, self.batch_size, self.seed, self.num_workers)
        steps_per_epoch = max(1, len(batches) // self.accumulate) if epochs is not None else None
        self.total_steps = min(
            max_steps if max_steps is not None else math.inf,
            epochs * steps_per_epoch if epochs is not None else math.inf,
        )
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        # One-time costs come before any timed step: the C++ kernels, if this
        # optimizer may use them, are built or loaded now, not in the first step.
        prepare_kernels(self.optimizer, log=lambda msg: print(msg, file=sys.stderr))
        torch.manual_seed(self.seed)
        random.seed(self.seed)
        if self.resume:
            self._restore()
        if self.step >= self.total_steps:  # resumed a run that had already finished
            self.should_stop, self.stop_reason = True, "max_steps" if max_steps is not None else "epochs"
        self._emit("on_fit_start")
        self._wall_start = fit_start
        try:
            while not self.should_stop and (epochs is None or self.epoch < epochs):
                self._emit("on_epoch_start")
                if self.world == 1:
                    parts = ((b, 1.0) for b in batches.epoch(self.epoch, start=self.batch_in_epoch))
                else:  # data parallel: this process's rows of each global batch
                    parts = batches.parts(self.epoch, self.batch_in_epoch, self.rank, self.world)
                for batch, share in parts:
                    self.batch_in_epoch += 1
                    with timed():  # training time: see descentlab.timing
                        stepped = self._train_batch(batch, self.batch_in_epoch, share)
                    if not stepped:
                        continue
                    self._after_step(val)
                    if self.should_stop or self.step >= self.total_steps:
                        break
                else:
                    self._end_epoch(val)
                    continue
                if self.step >= self.total_steps and not self.should_stop:
                    budget = "max_steps" if max_steps is not None and self.step >= max_steps else "epochs"
                    self.should_stop, self.stop_reason = True, budget
                    if budget == "epochs":  # the budget ran out on the epoch's last batch
                        self._end_epoch(val)
            if not self.stop_reason:
                self.stop_reason = "epochs"
            if strategies.averages_parameters(self.optimizer):
                self.optimizer.sync()  # DiLoCo: the processes end on one model
            if val is not None and self.history.last_eval_step != self.step:
                self._validate(val)
            strategies.same_buffers(self.model, self.world)  # the final evaluations see rank 0's too
            self._save_checkpoint()
        finally:
            try:
                self._emit("on_fit_end")
            finally:
                self._wall_before, self._wall_start = self.wall_seconds, None
        return self.history

    @property
    def wall_seconds(self) -> float:
        """Wall time spent in fit(), counting the work kept from before a resume.

        Every checkpoint records the wall time so far; a resumed run starts
        from the value in the checkpoint it resumed from and adds the whole
        wall time of its own fit() (its start-up included). So it is the wall
        time of the work the run kept: the time lost between the checkpoint and
        an interruption (steps done again after the resume) is not counted, as
        it cannot be known. A checkpoint written before this was recorded
        counts its ``train_seconds`` instead (a lower bound).
        """
        if self._wall_start is None:
            return self._wall_before
        return self._wall_before + time.perf_counter() - self._wall_start

    def _train_batch(self, batch: Any, micro: int, share: float = 1.0) -> bool:
        """Forward and backward one batch (``share``: this process's part of the
        global batch); step the optimizer every ``accumulate`` batches. Returns
        True when an optimizer step happened. A non-finite loss either raises
        or skips the batch (discarding the gradients accumulated so far)."""
        start = time.perf_counter()
        batch = to_device(batch, self.device)
        final = micro % self.accumulate == 0
        with self._sync_gradients(final), self._autocast():
            loss, _ = forward(self.train_model, batch, self.loss_fn, self.target_key)
        batch_loss = loss.detach() if self.world == 1 else _global_mean(loss.detach(), share)
        value = batch_loss.item()  # one read of the loss per batch, for the check and the log
        if not math.isfinite(value):  # the same decision on every process
            return self._nonfinite(value, start)
        scaled = loss / self.accumulate if self.accumulate > 1 else loss
        if self.world > 1 and not self._own_loss:  # DDP/FSDP average over processes: weight by this shard's rows
            scaled = scaled * (share * self.world)
        with self._sync_gradients(final):
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
        self._loss_sum += value
        if micro % self.accumulate:
            self.train_seconds += time.perf_counter() - start
            return False
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        self._clip_gradients()
        self._emit("on_before_step")
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scheduler is not None and not _is_plateau(self.scheduler):
            self.scheduler.step()
        self.step += 1
        self.consecutive_skips = 0
        self.last_loss = self._loss_sum / self.accumulate
        self._loss_sum = 0.0
        self.train_seconds += time.perf_counter() - start
        return True

    def _sync_gradients(self, final: bool):
        """Gradient accumulation: no all-reduce on the micro-steps before the
        last (DDP's ``no_sync``, FSDP2's ``set_requires_gradient_sync``); the
        last one reduces the accumulated sum once."""
        if final or self.world == 1:
            return contextlib.nullcontext()
        if isinstance(self.train_model, DistributedDataParallel):
            return self.train_model.no_sync()
        if strategies.is_fsdp(self.train_model):
            return _fsdp_no_sync(self.train_model)
        return contextlib.nullcontext()

    def _clip_gradients(self) -> None:
        if not self.clip:
            return
        params = [p for p in self.model.parameters() if p.grad is not None]
        if "agc" in self.clip:
            from ..optim.transforms.clip import AdaptiveClip

            rule = AdaptiveClip(clipping=self.clip["agc"])
            group = {"clipping": self.clip["agc"], "agc_eps": 1e-3}
            for p in params:
                p.grad.copy_(rule.update_tensor(p.grad, p, {}, group))
        if "value" in self.clip:
            torch.nn.utils.clip_grad_value_(params, self.clip["value"])
        if "norm" in self.clip:
            self.last_grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.clip["norm"]))

    def _nonfinite(self, value: float, start: float) -> bool:
        self.optimizer.zero_grad(set_to_none=True)
        self._loss_sum = 0.0
        where = f"step {self.step + 1} (epoch {self.epoch + 1})"
        if self.on_nonfinite == "raise":
            raise NonFiniteLossError(
                f"the loss became {value} at {where}; lower the learning rate, clip gradients, "
                "or pass on_nonfinite='skip'"
            )
        self.skipped += 1
        self.consecutive_skips += 1
        self.train_seconds += time.perf_counter() - start
        if self.consecutive_skips >= self.max_skips:
            raise NonFiniteLossError(
                f"the loss was non-finite for {self.consecutive_skips} steps in a row, last at {where}: "
                "training diverged"
            )
        return False

    def _after_step(self, val: Any) -> None:
        logs = {"step": self.step, "epoch": self.epoch, "lr": float(self.optimizer.param_groups[0]["lr"])}
        if self.step % self.log_every == 0:
            logs["train_loss"] = self.last_loss
            if self.last_grad_norm is not None:
                logs["grad_norm"] = self.last_grad_norm
            self.history.log(self.step, self.train_seconds, logs)
        self._emit("on_step_end", logs)
        if self.eval_every and self.step % self.eval_every == 0 and val is not None:
            self._validate(val)
        if self.checkpoint_every and self.step % self.checkpoint_every == 0:
            self._save_checkpoint()

    def _end_epoch(self, val: Any) -> None:
        self.epoch += 1
        self.batch_in_epoch = 0
        if self.eval_every is None and val is not None:
            self._validate(val)
        self._emit("on_epoch_end")

    # -- evaluation --------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, data: Any, batch_size: int = 1000) -> dict[str, float]:
        """Mean loss and the metrics over ``data`` (tensors, a Dataset or batches), in eval mode."""
        was_training = self.model.training
        self.model.eval()
        self._mode_of_optimizer("eval")
        total, count, outs, targets = 0.0, 0, [], []
        from_outputs = {k: fn for k, fn in self.metrics.items() if not getattr(fn, "from_loss", False)}
        try:
            for batch in _eval_batches(data, batch_size, self.num_workers):
                batch = to_device(batch, self.device)
                with self._autocast():
                    loss, out = forward(self.model, batch, self.loss_fn, self.target_key)
                n = batch_len(batch)
                total += float(loss) * n
                count += n
                if from_outputs:
                    outs.append(logits_of(out).float())
                    targets.append(targets_of(batch, self.target_key))
        finally:
            self._mode_of_optimizer("train")
            self.model.train(was_training)
        result = {"loss": total / max(count, 1)}
        if from_outputs and any(t is None for t in targets):
            raise ValueError(f"metric(s) {sorted(from_outputs)} need targets, and the evaluation batches have none")
        out, y = (torch.cat(outs), torch.cat(targets)) if from_outputs else (None, None)
        for name, fn in self.metrics.items():
            result[name] = float(fn(out, y) if name in from_outputs else fn(result["loss"]))
        return result

    def _mode_of_optimizer(self, mode: str) -> None:
        # Schedule-free optimizers evaluate at their averaged point.
        fn = getattr(self.optimizer, mode, None)
        if callable(fn):
            fn()

    def _validate(self, val: Any) -> None:
        # Every rank evaluates, and must decide alike (best, early stopping, plateau): the
        # buffers a training step updated locally (BatchNorm's running statistics, each
        # process's own without --sync-batchnorm) are rank 0's on every rank first.
        strategies.same_buffers(self.model, self.world)
        averaged = getattr(self.optimizer, "averaged", None)  # DiLoCo: the model the processes agree on
        with averaged() if callable(averaged) else contextlib.nullcontext():
            self._validate_here(val)

    def _validate_here(self, val: Any) -> None:
        results = {f"val_{k}": v for k, v in self.evaluate(val).items()}
        logs = {"step": self.step, "epoch": self.epoch, **results}
        self.history.log(self.step, self.train_seconds, logs, evaluation=True)
        if self.scheduler is not None and _is_plateau(self.scheduler):
            self.scheduler.step(results.get(self.best.monitor, results["val_loss"]))
        if self.best.update(self.step, results, _FullState(self.model)):
            self._save_best()
        self._emit("on_validation_end", logs)

    # -- checkpoints ---------------------------------------------------------------

    def model_state(self) -> dict[str, Tensor]:
        """The model's full state_dict (gathered under FSDP: every rank calls it)."""
        return strategies.model_state(self.model)

    def load_model_state(self, state: Mapping[str, Tensor]) -> None:
        strategies.load_model_state(self.model, dict(state))

    def restore_best(self) -> bool:
        """Load the best weights so far (False when there are none)."""
        return self.best.restore(_FullState(self.model))

    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs; loadable with weights_only=True.
        In the one-process format whatever the strategy; a collective under
        FSDP, ZeRO and DiLoCo (every rank calls it; rank 0's is complete)."""
        state = self._own_state()
        if strategies.averages_parameters(self.optimizer) and self.world > 1:
            # DiLoCo: the processes differ between synchronisations
            state["ranks"] = strategies.every_rank({"model": state["model"], "optimizer": state["optimizer"]})
        return state

    def _own_state(self) -> dict[str, Any]:
        return {
            "model": self.model_state(),
            "optimizer": strategies.optimizer_state(self.model, self.optimizer),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "loop": {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "skipped": self.skipped,
                "train_seconds": self.train_seconds,
                "wall_seconds": self.wall_seconds,
            },
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": _python_rng_state(),
            },
            "best": self.best.state_dict(),
            "history": self.history.state_dict(),
            "callbacks": [cb.state_dict() for cb in self.callbacks],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        ranks = state.get("ranks")
        if ranks is not None or (strategies.averages_parameters(self.optimizer) and self.world > 1):
            if ranks is None or len(ranks) != self.world:
                saved = "1 process" if ranks is None else f"{len(ranks)} processes"
                raise ValueError(f"this DiLoCo checkpoint was written by {saved} and resumes in as many; "
                                 f"this run has {self.world}")
            state = {**state, **ranks[self.rank]}
        self.load_model_state(state["model"])
        strategies.load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        loop = state["loop"]
        self.step, self.epoch = loop["step"], loop["epoch"]
        self.batch_in_epoch, self.skipped = loop["batch_in_epoch"], loop["skipped"]
        self.train_seconds = loop["train_seconds"]
        self._wall_before = float(loop.get("wall_seconds", loop["train_seconds"]))
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        _set_python_rng_state(state["rng"]["python"])
        self.best.load_state_dict(state["best"])
        self.history.load_state_dict(state["history"])
        for cb, cb_state in zip(self.callbacks, state["callbacks"]):
            cb.load_state_dict(cb_state)

    def _save_checkpoint(self) -> None:
        if self.checkpoint_dir is None:
            return
        gathered = strategies.gathers(self.model, self.optimizer)
        if self.rank != 0 and not gathered:  # data parallel: rank 0 writes
            return
        finite = all(bool(torch.isfinite(_local(p)).all()) for p in self.model.parameters())
        if not (strategies.all_true(finite, self.device) if gathered else finite):
            return  # never checkpoint a broken model; the previous checkpoint stays
        state = self.state_dict()
        if self.rank == 0:
            ckpt.save_step(self.checkpoint_dir, self.step, state, keep=self.keep_checkpoints)
            self._emit("on_checkpoint")

    def _save_best(self) -> None:
        if self.checkpoint_dir is not None and self.best.weights is not None and self.rank == 0:
            ckpt.atomic_save(
                {"step": self.best.step, "value": self.best.value, "monitor": self.best.monitor, "model": self.best.weights},
                f"{self.checkpoint_dir}/{ckpt.BEST_FILE}",
            )

    def _restore(self) -> None:
        found = ckpt.load_latest(self.checkpoint_dir)
        if found is None:
            return  # nothing to resume: start from the beginning
        state, _ = found
        self.load_state_dict(state)

    def _emit(self, hook: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(self, *args)


def _join_from_environment(device: torch.device) -> None:
    """distributed=True without a process group: join torchrun's (from its environment
    variables), so that a script with a Trainer runs under torchrun as it is."""
    import os

    if not all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        raise ValueError("distributed=True needs an initialized torch.distributed process group, or torchrun's "
                         "environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) to join one")
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    # and leave it at exit: a group never destroyed can abort the process while the
    # interpreter tears down (seen here: SIGABRT of one rank after its peer had exited)
    atexit.register(_leave_group)


def _leave_group() -> None:
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()
        dist.destroy_process_group()


class _FullState:
    """The model as BestTracker sees it: its full state_dict (FSDP: gathered)."""

    def __init__(self, model: nn.Module):
        self.model = model

    def state_dict(self) -> dict[str, Tensor]:
        return strategies.model_state(self.model)

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        strategies.load_model_state(self.model, dict(state))


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def _local(t: Tensor) -> Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _is_plateau(scheduler: Any) -> bool:
    return isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) or getattr(
        scheduler, "needs_metric", False
    )


def _global_mean(loss: Tensor, share: float) -> Tensor:
    """The global batch's mean loss from each process's (mean) loss and share."""
    total = (loss.float() * share).reshape(1)
    dist.all_reduce(total)
    return total[0]


def _is_tensors(data: Any) -> bool:
    if isinstance(data, torch.utils.data.TensorDataset):
        return True
    return isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data)


def _eval_batches(data: Any, batch_size: int, num_workers: int = 0) -> Iterable[Any]:
    """Tensors in order, in chunks of ``batch_size``; a Dataset through a
    DataLoader in order; anything else as given."""
    if not _is_tensors(data):
        yield from (eval_loader(data, batch_size, num_workers) if is_map_dataset(data) else data)
        return
    x, y = data.tensors if isinstance(data, torch.utils.data.TensorDataset) else data
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def _python_rng_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_rng_state(state: list[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))

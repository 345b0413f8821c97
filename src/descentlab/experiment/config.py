"""The configuration of one training run: a plain dataclass, validated.

Sources, later ones winning: the workload's default recipe, a YAML file
(``--config``, read with ``yaml.safe_load``), then command-line flags. An
unknown key in the file is an error naming it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UsageError


@dataclass
class TrainConfig:
    workload: str = ""
    optimizer: str | None = None  # None: the workload's recipe; a name, module:Name or file.py:Name
    lr: float | None = None
    opt: dict[str, Any] = field(default_factory=dict)  # extra optimizer hyperparameters
    schedule: str | None = None  # a name, module:fn or file.py:fn, or an LRScheduler class by reference
    sched: dict[str, Any] = field(default_factory=dict)  # schedule settings
    epochs: int | None = None
    steps: int | None = None
    batch_size: int | str | None = None
    weight_decay: float | None = None
    l1: float | None = None
    clip_norm: float | None = None
    early_stopping: int | None = None  # patience in evaluations
    precision: str = "fp32"
    seed: int = 0
    eval_every: int | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    nproc: int = 1  # processes per machine
    strategy: str = "ddp"  # how they share the work: ddp, zero, fsdp, diloco (descentlab.distributed)
    comm_hook: str | None = None  # DDP communication hook: allreduce, bf16, fp16, powersgd
    sync_batchnorm: bool = False  # BatchNorm statistics over the global batch (distributed.syncbn)
    sync_every: int = 20  # diloco: inner steps between synchronisations (H)
    outer_lr: float = 0.7  # diloco: the outer Nesterov SGD's lr and momentum (Douillard et al. 2023)
    outer_momentum: float = 0.9
    max_restarts: int = 0  # times the elastic agent restarts a failed group (which resumes)
    nnodes: str = "1"  # machines: N or MIN:MAX, as torchrun's --nnodes
    rdzv_endpoint: str | None = None  # HOST:PORT of the rendezvous, for many machines
    out: str | None = None
    data_dir: str | None = None
    device: str = "auto"
    quiet: bool = False
    tensorboard: str | None = None  # a folder for TensorBoard event files

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _int_at_least(name: str, value: Any, low: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"invalid {name}={value!r}: expected an integer >= {low}")


def _number_at_least(name: str, value: Any, low: float, strict: bool = False) -> None:
    if value is None:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if strict else value >= low)
    if not ok:
        raise UsageError(f"invalid {name}={value!r}: expected a finite number {'>' if strict else '>='} {low}")


def validate(config: TrainConfig) -> TrainConfig:
    """Check every field; raise UsageError naming the first bad one."""
    if not config.workload:
        raise UsageError("no workload given: pass --workload (see `descentlab list workloads`)")
    if not isinstance(config.workload, str):
        raise UsageError(f"invalid workload={config.workload!r}: expected a name or path/to/file.py:FUNC")
    from ..workloads.user import absolute, is_reference

    if is_reference(config.workload):  # saved absolute, so that --resume finds it from any folder
        config.workload = absolute(config.workload)
    from .. import optim, schedules

    # an optimizer or schedule given by reference or as an object: its canonical name (absolute, importable)
    if config.optimizer is not None and (not isinstance(config.optimizer, str) or is_reference(config.optimizer)):
        config.optimizer = optim.canonical(config.optimizer)
    if config.schedule is not None and (not isinstance(config.schedule, str) or is_reference(config.schedule)):
        config.schedule = schedules.canonical(config.schedule)
    _int_at_least("epochs", config.epochs, 1)
    _int_at_least("steps", config.steps, 1)
    _int_at_least("early_stopping", config.early_stopping, 1)
    _int_at_least("eval_every", config.eval_every, 1)
    _int_at_least("checkpoint_every", config.checkpoint_every, 1)
    _int_at_least("nproc", config.nproc, 1)
    _int_at_least("max_restarts", config.max_restarts, 0)
    _int_at_least("sync_every", config.sync_every, 1)
    _number_at_least("outer_lr", config.outer_lr, 0.0, strict=True)
    if not (isinstance(config.outer_momentum, (int, float)) and not isinstance(config.outer_momentum, bool)
            and 0 <= config.outer_momentum < 1):
        raise UsageError(f"invalid outer_momentum={config.outer_momentum!r}: expected a number in [0, 1)")
    from ..distributed.launch import check_endpoint, parse_nnodes
    from ..distributed.strategy import check as check_strategy

    check_strategy(config.strategy, config.comm_hook)
    if parse_nnodes(config.nnodes)[1] > 1 and config.rdzv_endpoint is None:
        raise UsageError(f"invalid nnodes={config.nnodes!r} without rdzv_endpoint: many machines need a "
                         "rendezvous they all reach (--rdzv-endpoint HOST:PORT)")
    if config.rdzv_endpoint is not None:
        check_endpoint(config.rdzv_endpoint)
    _int_at_least("seed", config.seed, 0)
    if config.batch_size is not None and config.batch_size != "full":
        _int_at_least("batch_size", config.batch_size, 1)
    _number_at_least("lr", config.lr, 0.0)
    _number_at_least("weight_decay", config.weight_decay, 0.0)
    _number_at_least("l1", config.l1, 0.0)
    _number_at_least("clip_norm", config.clip_norm, 0.0, strict=True)
    if config.precision not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"invalid precision={config.precision!r}: expected fp32, bf16 or fp16")
    for name in ("opt", "sched"):
        if not isinstance(getattr(config, name), dict):
            raise UsageError(f"invalid {name}={getattr(config, name)!r}: expected a mapping of settings")
    if config.resume and not config.out:
        raise UsageError("--resume needs --out DIR (the run to continue)")
    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise UsageError(f"invalid data_dir={config.data_dir!r}: no such directory")
    return config


def load_yaml_data(path: str | Path) -> Any:
    """The contents of a YAML file, read with the safe loader; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise UsageError(f"malformed YAML in {str(path)!r}{at}: {getattr(exc, 'problem', exc)}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a configuration file (safe loader); keys may use dashes or underscores."""
    path = Path(path)
    data = load_yaml_data(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"invalid config file {str(path)!r}: expected a mapping of settings, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in FIELDS:
            close = [f for f in FIELDS if f.startswith(name[:3])]
            hint = f" (did you mean {', '.join(sorted(close))}?)" if close else ""
            raise UsageError(f"unknown key {key!r} in config file {str(path)!r}{hint}")
        out[name] = value
    return out


def build(file_values: dict[str, Any], flag_values: dict[str, Any]) -> TrainConfig:
    """File values, then the flags that were given (None means not given)."""
    merged = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    return validate(TrainConfig(**merged))

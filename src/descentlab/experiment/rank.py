"""One worker of ``descentlab train --nproc N``: ``python -m descentlab.experiment.rank SPEC``.

Started by torch's elastic agent (:mod:`descentlab.distributed.launch`) with
torchrun's environment. SPEC is a JSON file: the run's configuration and the
file where rank 0 puts the outcome for the launching process (the summary, or
an error every rank met the same way — bad input, divergence — which is
reported, not restarted). Anything else is a failure of this worker: it exits
non-zero and the agent restarts the group or ends the job; before it exits, the
exception (type, message, when, and whether it was a collective's failure — the
sign of a rank that failed only because another died) goes to
``SPEC["errors"]/rank{R}-{restart}.json``, from which the launching process names
the real error and its rank (:func:`descentlab.distributed.launch.failure`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from torch.distributed.elastic.multiprocessing.errors import record


def _write(path: Path, outcome: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(outcome, default=str))
    os.replace(tmp, path)


def _record_error(folder: Path, rank: int, exc: BaseException) -> None:
    from ..distributed.launch import is_collective_failure

    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"rank{rank}-{restart}.json",
               {"rank": rank, "restart": restart, "time": time.time(), "type": type(exc).__name__,
                "message": str(exc), "collective": is_collective_failure(exc)})
    except OSError:
        pass  # the agent still reports the exit status


@record
def main(argv: list[str]) -> int:
    from .config import TrainConfig
    from .parallel import decided_kind, run_rank

    spec = json.loads(Path(argv[0]).read_text())
    config = TrainConfig(**spec["config"])
    rank = int(os.environ["RANK"])
    try:
        summary = run_rank(config)
        outcome = {"status": "ok", "summary": summary}
    except Exception as exc:
        kind = decided_kind(exc)
        if kind is None:
            if spec.get("errors"):
                _record_error(Path(spec["errors"]), rank, exc)
            raise
        outcome = {"status": "error", "kind": kind, "text": str(exc)}
    if rank == 0:
        _write(Path(spec["result"]), outcome)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # The outcome is written and the group left: exit without the interpreter's
    # teardown, where destroying torch's C++ objects with running threads in an
    # arbitrary order can abort the process (SIGABRT) after its work is done.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

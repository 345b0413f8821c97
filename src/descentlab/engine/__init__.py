"""The execution engine of ``compare`` and ``tune``: runs as trials of an Optuna study.

Optuna's RDB storage (Akiba et al. 2019) is the job queue, on SQLite for one machine
and PostgreSQL (or any SQLAlchemy URL) for many, so there is no home-made queue:

* :mod:`.storage` opens a storage URL (heartbeats and retries of stale trials on),
  checks it, and hides its password in messages;
* :mod:`.liveness` knows which trials are alive: the owner process of each and its
  heartbeat; dead owners' trials are failed and queued again;
* :mod:`.mutex` is a lock over the whole storage (a file lock for SQLite, an advisory
  lock for PostgreSQL) for the few steps that must not interleave across machines;
* :mod:`.queue` is a comparison's queue: each (strategy, seed) run an enqueued trial,
  taken by exactly one worker (an atomic WAITING -> RUNNING transition);
* :mod:`.workers` starts worker processes on this machine that die with their parent.

Why Optuna and not Ray: ``tune`` already stands on Optuna's storage, which gives
atomic trial claims, heartbeats and retry of dead workers' trials over a database
that many machines reach, with nothing to run but the database; Ray would add a
cluster runtime (a head node, its own object store and ports) for what is, here, a
list of independent runs of seconds to hours. docs/compare.md, "Many machines".
"""

"""Data-parallel and sharded training on torch's own distributed engine.

* :mod:`.launch` — ``train --nproc N`` through torch's elastic agent (torchrun's engine),
  restarts, the failed rank named; :mod:`.rendezvous` — its loopback rendezvous.
* :mod:`.strategy` — ``--strategy ddp|zero|fsdp|diloco`` and checkpoints in the one-process format.
* :mod:`.diloco` — DiLoCo (Douillard et al. 2023) around any optimizer.
* :mod:`.hooks` — DDP communication hooks by name (bf16, fp16, PowerSGD).
* :mod:`.traffic` — the bytes the collectives send, measured.

The optimizers' own collectives under FSDP2 sharding are in :mod:`descentlab.optim.sharded`
(docs/sharding.md). The Trainer (:mod:`descentlab.train`) uses this layer; the experiment layer
(:mod:`descentlab.experiment.parallel`) starts and joins the processes.
"""

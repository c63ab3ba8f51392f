"""The options of ``--engine ray``, in a module of their own: the runner and the command line
read them without importing Ray or the engine itself."""

from __future__ import annotations

from dataclasses import dataclass

from genbatch.errors import GenbatchError

# --worker-wait: seconds with no Ray worker ready before the run stops (exit 1, a rerun resumes):
# room for workers to start and a lost node to come back or be replaced, short enough that a cron
# job whose cluster is gone ends within minutes.
WORKER_WAIT = 300.0
WORKER_WAIT_MAX = 86400.0


@dataclass(frozen=True)
class RayOptions:
    """``--engine ray``: the cluster (``address``: None starts a local instance, ``auto`` joins
    the one this machine belongs to), how many model-holding workers, each one's GPUs (0: CPU
    workers), and how often a lost worker's batches are retried."""

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float | None = None
    max_retries: int = 3
    worker_wait: float = WORKER_WAIT

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise GenbatchError(f"--ray-workers {self.workers}: expected 1 or more")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise GenbatchError(f"--gpus-per-worker {self.gpus_per_worker}: expected 0 or more (0: CPU workers)")
        if self.max_retries < 0:
            raise GenbatchError(f"--max-retries {self.max_retries}: expected 0 or more")
        if not 0 < self.worker_wait <= WORKER_WAIT_MAX:  # NaN too
            raise GenbatchError(f"--worker-wait {self.worker_wait:g}: expected seconds above 0, at most 86400 (a day)")

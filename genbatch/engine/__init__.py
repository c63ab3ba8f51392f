"""Engines run a plan's pending jobs on a backend, in batches they size (``batch_size``), and hand
every outcome to the sink, which writes the ledger; ``writer`` encodes and writes the images.
``local`` runs in this process, ``ray`` on model-holding actors across a Ray cluster; ``base`` holds
what both share (the batch call and its out-of-memory back-off).

May import: genbatch.report (thumbnails), genbatch.plan, genbatch.backends and everything below them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from genbatch.engine.base import Engine
from genbatch.errors import GenbatchError

ENGINE_NAMES = ("local", "ray")
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


def _local_engine(ray: RayOptions | None) -> Engine:
    from genbatch.engine.local import LocalEngine

    return LocalEngine()


def _ray_engine(ray: RayOptions | None) -> Engine:
    from genbatch.engine.ray import RayEngine  # imports Ray only when asked for

    return RayEngine(**asdict(ray or RayOptions()))


ENGINES: dict[str, Callable[[RayOptions | None], Engine]] = {"local": _local_engine, "ray": _ray_engine}

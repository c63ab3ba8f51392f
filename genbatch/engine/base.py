"""What every engine shares: the work a run hands an engine, the report it returns, and the
batch call with its out-of-memory back-off, which the local engine and each Ray worker make."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from genbatch.backends import BackendOptions, GeneratedImage, LoadedModel
from genbatch.engine.batch_size import BatchSizer, is_out_of_memory, size_key
from genbatch.engine.sink import BatchFacts, ResultSink
from genbatch.engine.writer import Encoding
from genbatch.errors import ModelError
from genbatch.jobs import Job
from genbatch.pipelines.model_lookup import ModelRef


@dataclass(frozen=True)
class EngineWork:
    """Everything an engine needs to run a plan's pending batches."""

    out: Path | str  # a str: the URL of a prefix in object storage
    groups: list[list[Job]]  # jobs that can share a batch, in run order (genbatch.plan.planner.ordered_groups)
    backend: str
    options: BackendOptions
    encoding: Encoding
    writers: int  # image encoding threads
    sizer: BatchSizer  # how many jobs each pipeline call takes


@dataclass
class EngineReport:
    generation_seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)  # what the loaded models said of themselves
    workers: list[dict[str, Any]] = field(default_factory=list)  # per worker: device, images, seconds (Ray)


class Engine(Protocol):
    name: str

    def run(
        self, work: EngineWork, sink: ResultSink, stop_requested: Callable[[], bool], say: Callable[[str], None]
    ) -> EngineReport:
        """Run ``work.groups`` until done or ``stop_requested()``; report every job that ran
        to ``sink``. Raises :class:`ModelError` when the run's only model cannot load."""


def generate_batch(
    loaded: LoadedModel, batch: list[Job], sizer: BatchSizer, key: str
) -> list[tuple[GeneratedImage, int, float]]:
    """Each job's image, with the size of the batch it ran in and its seconds per image.

    A batch that runs out of memory is halved and run again (the size that fit is remembered);
    a batch that fails otherwise is retried one job at a time, so one bad job fails alone,
    with its reason. A model that warms up (a compiled denoiser's first batch of a shape) does
    so first, untimed."""
    warm_up = getattr(loaded, "warm_up", None)
    began = time.monotonic()
    try:
        if warm_up is not None:
            warm_up(batch)
            began = time.monotonic()
        images = loaded.generate(batch)
    except Exception as err:
        # Only the facts leave this block: the exception's traceback holds the failed call's
        # frames, and with them its tensors on the accelerator, until the block ends.
        out_of_memory, error = is_out_of_memory(err), f"{type(err).__name__}: {err}"
    else:
        seconds = time.monotonic() - began
        sizer.ran(key, len(batch), seconds)
        return [(image, len(batch), seconds / len(batch)) for image in images]
    return _after_failure(loaded, batch, sizer, key, out_of_memory, error)


def _after_failure(
    loaded: LoadedModel, batch: list[Job], sizer: BatchSizer, key: str, out_of_memory: bool, error: str
) -> list[tuple[GeneratedImage, int, float]]:
    """A failed batch's jobs: halved and run again after running out of memory, one at a
    time after any other error; a single job fails with its reason."""
    release = getattr(loaded, "release_memory", None)
    if release is not None:
        release()  # the failed call's memory is free now, and goes back to the device
    if len(batch) == 1:
        first = batch[0]
        reason = f"out of memory: one image of {first.width}x{first.height} does not fit ({error})"
        return [(GeneratedImage(first, None, reason if out_of_memory else error), 1, 0.0)]
    if not out_of_memory:
        return [r for job in batch for r in generate_batch(loaded, [job], sizer, key)]
    sizer.out_of_memory(key, len(batch))
    # in the sizes now known to fit, which may shrink again
    return [r for chunk in sized_batches(batch, sizer, key) for r in generate_batch(loaded, chunk, sizer, key)]


def sized_batches(
    jobs: list[Job], sizer: BatchSizer, key: str, stopping: Callable[[], bool] = lambda: False
) -> Iterator[list[Job]]:
    """``jobs`` (one group) cut into batches, each as large as ``sizer`` says when it is taken
    (so a size learned from one batch applies to the next), until done or ``stopping()``."""
    start = 0
    while start < len(jobs) and not stopping():
        batch = jobs[start : start + sizer.next_size(key)]
        start += len(batch)
        yield batch


def split_groups(groups: list[list[Job]], size: int) -> list[list[Job]]:
    """Each group cut into pieces of up to ``size`` jobs, in order."""
    return [group[i : i + size] for group in groups for i in range(0, len(group), size)]


def model_did_not_load(
    error: str,
    groups: list[list[Job]],
    device: str,
    fail: Callable[[Job, BatchFacts, str], object],
    *,
    only_model: bool,
    say: Callable[[str], None],
) -> None:
    """A model that cannot load: the run's only model stops the run (a ModelError); one of several
    fails its jobs (``groups``) through ``fail`` with the reason, and the run goes on."""
    if only_model:
        raise ModelError(error)
    say(f"error: {error}")
    for group in groups:
        facts = BatchFacts(len(group), 0.0, device)
        for job in group:
            fail(job, facts, f"the model did not load: {error}")


def batch_size_key(job: Job, options: BackendOptions) -> str:
    return size_key(job.model.fingerprint, job.width, job.height, options.device, options.dtype)


def by_model(groups: list[list[Job]]) -> Iterator[tuple[ModelRef, list[list[Job]]]]:
    """Consecutive groups of the same model (the planner puts each model's groups together)."""
    current: list[list[Job]] = []
    for group in groups:
        if current and group[0].model.id != current[0][0].model.id:
            yield current[0][0].model, current
            current = []
        current.append(group)
    if current:
        yield current[0][0].model, current

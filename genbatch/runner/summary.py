"""The run summary: one typed shape for a dry run, a real run and a run that failed.

``run.json``, ``genbatch run --json`` and the five-second read at the end of a run are all
rendered from a :class:`RunSummary`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from genbatch.errors import GenbatchError, ManifestError
from genbatch.store.ledger import SCHEMA_VERSION

# What the end of a run writes besides the images and the ledger, as the closing line names it.
ALL_WRITTEN = ("run.json", "report.csv/.parquet", "report.html")


@dataclass
class Counts:
    planned: int = 0  # jobs of this run (after --shard and --limit)
    already_done: int = 0
    to_generate: int = 0
    batches: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0  # invalid rows left out by --skip-invalid
    not_run: int = 0  # pending jobs an interruption left for the next run


@dataclass
class RunSummary:
    out: str
    exit_code: int = 0
    dry_run: bool = False
    manifest: str | None = None
    counts: Counts = field(default_factory=Counts)
    models: list[dict[str, Any]] = field(default_factory=list)
    backend: str | None = None
    engine: str | None = None
    device: str | None = None
    dtype: str | None = None
    providers: list[str] | None = None
    batch_size: int | str | None = None  # asked for: a number or "auto"
    batch_sizes: dict[str, Any] = field(default_factory=dict)  # the largest that ran, per model x size x device
    run_id: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    wall_seconds: float | None = None
    generation_seconds: float | None = None
    images_per_second: float | None = None
    interrupted: bool = False
    command: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    backend_facts: dict[str, Any] = field(default_factory=dict)
    workers: list[dict[str, Any]] = field(default_factory=list)  # per engine worker (Ray): device, images, seconds
    versions: dict[str, str] = field(default_factory=dict)
    genbatch_version: str | None = None
    failures: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None  # a run that stopped on bad input: message, file, line
    schema: int = SCHEMA_VERSION
    # The end-of-run files written, in order ("run.json", "report.csv/.parquet", "report.html"...),
    # for the closing line; None: not recorded (all of them are named). Not part of run.json,
    # which is written before the others.
    written: list[str] | None = None

    def to_dict(self) -> dict[str, Any]:
        found = asdict(self)
        del found["written"]
        return found

    @classmethod
    def from_error(cls, err: GenbatchError, out: str, manifest: str | None) -> RunSummary:
        """What ``--json`` prints when a run stops on bad input."""
        where: dict[str, Any] = {}
        if isinstance(err, ManifestError) and err.problems:
            first = err.problems[0]
            where = {
                "file": first.file,
                "line": first.line,
                "column": first.column,
                "problems": [str(p) for p in err.problems],
            }
        return cls(
            out=out,
            exit_code=err.exit_code,
            manifest=manifest,
            error={"message": str(err), "type": type(err).__name__, **where},
        )

    def format(self) -> str:
        """The five-second read at the end of a run."""
        c = self.counts
        lines = [
            f"{c.done} generated, {c.already_done} already done, {c.failed} failed, {c.skipped} rows skipped"
            + (f", {c.not_run} not run (interrupted)" if self.interrupted else ""),
            f"{self.wall_seconds or 0:.1f}s wall, {self.images_per_second or 0:.2f} images/s on "
            f"{self.backend}/{self.device}/{self.dtype}",
            ", ".join(["images", "genbatch.jsonl", *(ALL_WRITTEN if self.written is None else self.written)])
            + f" in {self.out}",
        ]
        if self.workers:
            lines.append(
                f"{len(self.workers)} {self.engine} workers: "
                + "; ".join(
                    f"#{w['worker']} {w['images']} images in {w['seconds']:.1f}s on {w['device']}" for w in self.workers
                )
            )
        for failure in self.failures[:10]:
            lines.append(f"  failed: line {failure['line']} seed {failure['seed']}: {failure['error']}")
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more failures (see run.json)")
        return "\n".join(lines)

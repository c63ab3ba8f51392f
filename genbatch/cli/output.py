"""What the ``genbatch`` commands print: results on stdout (text, or JSON with ``--json``),
progress, summaries, warnings and ``error: ...`` lines on stderr."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import typer

from genbatch.echo import shown, shown_bare
from genbatch.errors import GenbatchError
from genbatch.manifest.a1111 import READINGS
from genbatch.manifest.fields import text_value


def say(message: str) -> None:
    """One line on stderr, written at once."""
    print(message, file=sys.stderr, flush=True)


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print a GenbatchError as ``error: ...`` and exit with its code, without a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except GenbatchError as err:
            say(f"error: {err}")
            raise typer.Exit(err.exit_code) from None

    return wrapper


def show_library_warnings() -> None:
    """genbatch's own logged warnings (a skipped ledger line) as ``warning: ...`` on stderr."""
    logger = logging.getLogger("genbatch")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine())
        logger.propagate = False


class _WarningLine(logging.Handler):
    """Writes to whatever sys.stderr is at the time (a test runner swaps it per command)."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"warning: {record.getMessage()}")


def print_json(value: Any, **options: Any) -> None:
    print(json.dumps(value, indent=2, **options))


def print_plan(result: Any, as_json: bool) -> None:
    """``genbatch run --dry-run``: the plan's counts, its model and its first 20 jobs."""
    summary = result.summary
    if as_json:
        jobs = [{"index": j.index, "key": j.key, "file": j.file, **j.params()} for j in result.pending]
        print_json(dict(summary.to_dict(), jobs=jobs), ensure_ascii=False, default=str)
        return
    for warning in result.warnings:
        say(f"warning: {warning}")
    c = summary.counts
    models = ", ".join(
        f"{m['name']} ({m['fingerprint']}; {m['family']}: "
        + " ".join(f"{k}={v}" for k, v in m["defaults"].items())
        + ")"
        for m in summary.models
    )
    print(
        f"plan: {c.planned} images, {c.already_done} already done, {c.to_generate} to generate in {c.batches} batches"
    )
    print(f"model: {models}; {summary.backend}/{summary.device}/{summary.dtype}; out: {summary.out}")
    if c.skipped:
        print(f"{c.skipped} invalid rows will be skipped")
    for job in result.pending[:20]:
        own = f" timesteps={','.join(map(str, job.timesteps))}" if job.timesteps else ""
        own += f" lora={text_value('lora', job.lora)}" if job.lora else ""
        print(
            f"  {job.file}  seed={job.seed} steps={job.steps}{own} guidance={job.guidance_scale:g} "
            f"{job.width}x{job.height}  {shown(job.prompt, 60)}"
        )
    if len(result.pending) > 20:
        print(f"  ... and {len(result.pending) - 20} more")


@dataclass
class Validation:
    """What ``genbatch validate`` found in a manifest."""

    name: str
    format: str | None
    problems: list[Any]
    rows: list[Any] = field(default_factory=list)
    columns: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def print_validation(found: Validation, as_json: bool) -> None:
    images = sum(r.num_images or 1 for r in found.rows)
    if as_json:
        problems = [{"file": p.file, "line": p.line, "column": p.column, "message": p.message} for p in found.problems]
        print_json(
            {
                "file": found.name,
                "format": found.format,
                "valid": not found.problems,
                "rows": len(found.rows),
                "images": images,
                "columns": found.columns,
                "warnings": found.warnings,
                "problems": problems,
            },
            ensure_ascii=False,
        )
        return
    for warning in found.warnings:
        say(f"warning: {warning}")
    for problem in found.problems:
        print(problem)
    name, fmt, rows, count = found.name, found.format, len(found.rows), len(found.problems)
    reading = f" (read as {READINGS[fmt]})" if fmt in READINGS else ""
    if found.problems:
        say(f"{name}: {count} problem{'s' if count != 1 else ''}, {rows} valid rows{reading}")
    else:
        say(
            f"{name}: {rows} rows, {images} images, valid{reading} ({fmt}; columns: "
            + ", ".join(f"{k}<-{shown(v)}" for k, v in found.columns.items())
            + ")"
        )


def print_models(found: list[dict[str, Any]]) -> None:
    for entry in found:
        mark = "*" if entry["default"] else " "
        state = "" if entry["present"] else " (built on first use)"
        print(f"{mark} {entry['name']:<24} {entry['source']:<10} {entry['path']}{state}")
        print(f"  {'':<24} {entry['description']}")
        runs = ", ".join(f"{b}: " + ("yes" if entry[b] is True else entry[b]) for b in ("torch", "onnx"))
        print(f"  {'':<24} family {entry['family']} ({entry['pipeline'] or '?'}); {runs}")
        if entry.get("notes"):
            print(f"  {'':<24} {entry['notes']}")


def print_families(rows: list[dict[str, Any]]) -> None:
    width = max((len(row["family"]) for row in rows), default=0) + 1  # the longest name, then a space
    for row in rows:
        pipelines = ", ".join(row["pipelines"]) or "other text-only pipelines AutoPipelineForText2Image maps"
        print(f"{row['family']:<{width}} {row['title']}: {pipelines}")
        print(f"{'':<{width}} defaults: {row['steps']} steps, guidance_scale {row['guidance_scale']:g}")
        print(f"{'':<{width}} guidance_scale: {row['guidance_meaning']}")
        print(f"{'':<{width}} negative_prompt: {row['negative_prompt']}")
        if row["takes"]:
            print(f"{'':<{width}} also takes: {', '.join(row['takes'])}")
        if row["notes"]:
            print(f"{'':<{width}} {row['notes']}")


def print_export(result: Any, as_json: bool) -> None:
    if as_json:
        fields = ("model", "fingerprint", "source_fingerprint", "opset", "fp16", "seconds", "components", "parity")
        print_json({"out": str(result.out), **{name: getattr(result, name) for name in fields}}, default=str)
        return
    from genbatch.export.parity import format_parity

    say(
        f"exported {result.model} to {result.out} in {result.seconds:.1f} s "
        f"(opset {result.opset}, {'fp16' if result.fp16 else 'fp32'}, fingerprint {result.fingerprint})"
    )
    say(format_parity(result.parity))
    say(f"run it: genbatch run PROMPTS --backend onnx --model {result.out}")


def print_merge(result: Any, folders: int, as_json: bool) -> None:
    if as_json:
        print_json(asdict(result), default=str)
        return
    say(
        f"merged {folders} folders into {result.into}: {result.images} images ({result.linked} hard-linked, "
        f"{result.copied} copied, {result.in_place} already there), {result.failed} failed, "
        f"{result.skipped} rows skipped"
    )


def print_verify(result: Any, out: Any, as_json: bool) -> None:
    if as_json:
        print_json(result.as_dict(), ensure_ascii=False)
        return
    for kind in ("missing", "changed", "unrecorded"):
        for name in getattr(result, kind):
            print(f"{kind}: {shown_bare(name, 4096)}")
    counts = f"{len(result.missing)} missing, {len(result.changed)} changed"
    say(
        f"{shown_bare(out, 4096)}: {result.checked} images checked: {counts}, "
        f"{len(result.unrecorded)} unrecorded" + (" (all match the ledger)" if result.ok else "")
    )


def print_compare(result: Any, as_json: bool, quiet: bool) -> None:
    from genbatch.evaluate.compare import dumps, format_table

    print(dumps(result.report) if as_json else format_table(result.report))
    if not quiet:
        say(f"wrote {result.path}")


def print_eval(result: Any, as_json: bool, quiet: bool) -> None:
    from genbatch.evaluate import format_table

    if as_json:
        print_json(result.report, ensure_ascii=False)
    else:
        print(format_table(result.report))
    if not quiet:
        for note in result.report["notes"]:
            say(f"note: {note}")
        computed = ", ".join(f"{n} {c}" for n, c in result.computed.items())
        say(f"wrote {result.path} ({len(result.report['images'])} images; computed now: {computed})")

"""The machine-readable summaries of an output folder: run.json and report.csv/.parquet.

Both tables are rebuilt from the ledger (latest record per key), so they are always
consistent with it, whichever runs wrote it.
"""

from __future__ import annotations

import json
import platform
import sys
import threading
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from genbatch.echo import shown_bare
from genbatch.manifest.fields import BY_NAME, INPUT_FIELDS, report_columns, text_value
from genbatch.report.folder import extra_fields
from genbatch.safe_write import write_atomic
from genbatch.store.ledger import CurrentRecords, iter_current_records

TABLE_COLUMNS = [
    "status",
    "key",
    "file",
    "index",
    "row",
    "line",
    "k",
    "id",
    *report_columns(),
    *(f"{name}_sha256" for name in INPUT_FIELDS),  # an input's path is its field's column
    "model",
    "model_fingerprint",
    "model_hash",
    "vae",
    "backend",
    "device",
    "dtype",
    "batch_size",
    "seconds",
    "finished_at",
    "bytes",
    "sha256",
    "error",
    "run_id",
    "manifest",
]
_INT_COLUMNS = [
    "index",
    "row",
    "line",
    "k",
    "batch_size",
    "bytes",
    *(f for f in report_columns() if BY_NAME[f].kind == "int" and (BY_NAME[f].hi or 0) < 2**63),
]
_UINT_COLUMNS = [f for f in report_columns() if BY_NAME[f].kind == "int" and (BY_NAME[f].hi or 0) >= 2**63]
_TEXT_COLUMNS = [f for f in report_columns() if BY_NAME[f].to_text is not None]
_FLOAT_COLUMNS = ["seconds", *(f for f in report_columns() if BY_NAME[f].kind == "float")]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in (
        "genbatch",
        "torch",
        "diffusers",
        "transformers",
        "numpy",
        "pillow",
        "onnxruntime",
        "onnxruntime-gpu",
        "onnx",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "genbatch" not in found:
        from genbatch.version import __version__

        found["genbatch"] = __version__
    return found


def prepare(html: bool) -> None:
    """Import what the end-of-run reports use (pandas and pyarrow; Jinja2 and the page's
    template with ``html``: ~0.5 s on a small machine) in a thread, so that a run on an
    accelerator does it while its batches generate rather than after the last one."""
    threading.Thread(target=_prepare, args=(html,), name="genbatch-prepare-reports", daemon=True).start()


def _prepare(html: bool) -> None:
    try:
        import pandas  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        if html:
            from genbatch.report.html import prepare_template

            prepare_template()
    except Exception:  # noqa: S110 - the reports import them again at the end, and say what failed
        pass


def write_json(path: Path, data: Any, *, root: Path | None = None) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode(), root=root)


EXTRA_PREFIX = "field."


def write_tables(out: Path, *, chunk_rows: int = 20_000, records: Iterable[dict[str, Any]] | None = None) -> list[Path]:
    """report.csv and report.parquet, one row per job key (the ledger's current records),
    streamed in chunks so memory stays flat however long the ledger. ``fields`` (the
    manifest's own columns, of any type) is kept as a JSON string so both formats stay loadable;
    besides, each manifest column that is not a generation field (DrawBench's ``Category``) is
    a column of its own, ``field.<name>``: whole numbers, numbers or text, as its values are."""
    csv_final, parquet_final = Path(out) / "report.csv", Path(out) / "report.parquet"
    current = records if records is not None else CurrentRecords(out)
    extras = _extra_columns(current)

    def write_both(parquet_temp: Path) -> None:  # one pass over the records makes both tables
        write_atomic(
            csv_final, lambda csv_temp: _write_both(current, csv_temp, parquet_temp, chunk_rows, extras), root=out
        )

    write_atomic(parquet_final, write_both, root=out)
    return [csv_final, parquet_final]


# metadata.jsonl: the Hugging Face ``imagefolder`` layout, so that
# ``datasets.load_dataset("imagefolder", data_dir=OUT)`` loads a run as a data set. The same
# columns on every line (None where a field is not set), so the data set has one schema.
METADATA_NAME = "metadata.jsonl"
METADATA_COLUMNS = ["key", *report_columns(), "model", "model_fingerprint", "id"]


def write_metadata(out: Path, *, records: Iterable[dict[str, Any]] | None = None) -> Path:
    """OUT/metadata.jsonl, one line per image on disk (``file_name`` relative to OUT), as Hugging
    Face ``datasets``' imagefolder reads it: its ``image`` is the generated image, so a row's input
    image is ``input_image`` (its path as the row gave it) and ``input_image_sha256``."""

    def write(path: Path) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            for record in records if records is not None else iter_current_records(out):
                if record.get("status") != "done" or not isinstance(record.get("file"), str):
                    continue
                line = {"file_name": record["file"], **{c: record.get(c) for c in METADATA_COLUMNS}}
                for name in INPUT_FIELDS:  # a row's input files: their paths and sha256, apart from the image
                    given = line.pop(name)
                    if isinstance(given, dict):
                        line[f"input_{name}"], line[f"input_{name}_sha256"] = given.get("path"), given.get("sha256")
                if line["timesteps"] is not None:
                    line["timesteps"] = " ".join(map(str, line["timesteps"]))
                handle.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")

    return write_atomic(Path(out) / METADATA_NAME, write, root=out)


def _extra_columns(records: Iterable[dict[str, Any]]) -> dict[str, str]:
    """The extra manifest columns of the ledger's current records, in first-seen order, each
    with the pandas dtype its values fit: Int64, Float64 or string."""
    kinds: dict[str, set[str]] = {}
    for record in records:
        for name, value in extra_fields(record).items():
            seen = kinds.setdefault(name, set())
            if value is None or value == "":
                continue
            seen.add(
                "int"
                if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**63
                else "float"
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else "text"
            )
    return {
        EXTRA_PREFIX + name: (
            "Int64" if seen == {"int"} else "Float64" if seen and seen <= {"int", "float"} else "string"
        )
        for name, seen in kinds.items()
    }


def _write_both(
    records: Iterable[dict[str, Any]], csv_path: Path, parquet_path: Path, chunk_rows: int, extras: dict[str, str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        with open(csv_path, "w", encoding="utf-8", newline="") as handle:
            for number, frame in enumerate(_frames(records, chunk_rows, extras)):
                frame.to_csv(handle, index=False, header=number == 0)
                table = pa.Table.from_pandas(frame, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(parquet_path, table.schema)
                writer.write_table(table.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _frames(records: Iterable[dict[str, Any]], chunk_rows: int, extras: dict[str, str]) -> Iterator[Any]:
    """The report rows as typed DataFrames of up to ``chunk_rows`` rows (at least one, maybe empty)."""
    rows: list[dict[str, Any]] = []
    yielded = False
    for record in records:
        rows.append(_table_row(record, extras))
        if len(rows) == chunk_rows:
            yield _typed_frame(rows, extras)
            rows, yielded = [], True
    if rows or not yielded:
        yield _typed_frame(rows, extras)


def _table_row(record: dict[str, Any], extras: dict[str, str]) -> dict[str, Any]:
    row = {column: record.get(column) for column in TABLE_COLUMNS}
    row["fields"] = json.dumps(record.get("fields") or {}, ensure_ascii=False, default=str)
    for name in INPUT_FIELDS:  # a row's input file: its path (the text column) and its sha256
        given = row[name]
        row[f"{name}_sha256"] = given.get("sha256") if isinstance(given, dict) else None
    for name, value in extra_fields(record).items():
        column = EXTRA_PREFIX + name
        row[column] = (
            None
            if value == ""
            else value
            if extras[column] != "string" or value is None
            else (value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
        )
    if row["timesteps"]:  # a model's own list (genbatch.json), as one cell of numbers
        row["timesteps"] = " ".join(map(str, row["timesteps"]))
    for name in _TEXT_COLUMNS:  # a LoRA set as "style:0.8; other:0.5"
        row[name] = text_value(name, row[name]) if row[name] else None
    return row


def _typed_frame(rows: list[dict[str, Any]], extras: dict[str, str]) -> Any:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS + ["fields", *extras])
    for column, dtype in extras.items():
        frame[column] = frame[column].astype(dtype)
    for columns, dtype in ((_INT_COLUMNS, "Int64"), (_UINT_COLUMNS, "UInt64"), (_FLOAT_COLUMNS, "Float64")):
        for column in columns:
            frame[column] = frame[column].astype(dtype)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("string")
    return frame


def command_line() -> list[str]:
    # an argument that is not valid UTF-8 (a file name's bytes, as surrogates) is escaped
    return [shown_bare(a, 1 << 16) for a in (Path(sys.argv[0]).name, *sys.argv[1:])] if sys.argv else []

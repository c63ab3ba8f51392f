"""The machine-readable summaries of an output folder: run.json and report.csv/.parquet.

Both tables are rebuilt from the ledger (latest record per key), so they are always
consistent with it, whichever runs wrote it.
"""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .fields import BY_NAME, report_columns
from .ledger import current_records, iter_records
from .safe_write import write_atomic

TABLE_COLUMNS = [
    "status", "key", "file", "index", "row", "line", "k", "id", *report_columns(), "model", "model_fingerprint",
    "backend", "device", "dtype", "batch_size", "seconds", "finished_at", "bytes", "sha256", "error", "run_id",
    "manifest",
]
_INT_COLUMNS = ["index", "row", "line", "k", "batch_size", "bytes",
                *(f for f in report_columns() if BY_NAME[f].kind == "int" and (BY_NAME[f].hi or 0) < 2**63)]
_UINT_COLUMNS = [f for f in report_columns() if BY_NAME[f].kind == "int" and (BY_NAME[f].hi or 0) >= 2**63]
_FLOAT_COLUMNS = ["seconds", *(f for f in report_columns() if BY_NAME[f].kind == "float")]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("genbatch", "torch", "diffusers", "transformers", "numpy", "pillow", "onnxruntime",
                 "onnxruntime-gpu", "onnx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    if "genbatch" not in found:
        from . import __version__

        found["genbatch"] = __version__
    return found


def write_json(path: Path, data: Any, *, root: Path | None = None) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode(), root=root)


def write_tables(out: Path, records: list[dict[str, Any]] | None = None) -> list[Path]:
    """report.csv and report.parquet, one row per job key; ``fields`` (the manifest's own
    columns, of any type) is kept as a JSON string so both formats stay loadable.

    ``records``: the ledger's records as ``ledger.iter_records`` reads them, when the caller
    has them already (the end of a run reads the ledger once for the tables and the page)."""
    import pandas as pd

    if records is None:
        records = list(iter_records(out))
    rows = []
    for record in current_records(records):
        row = {column: record.get(column) for column in TABLE_COLUMNS}
        row["fields"] = json.dumps(record.get("fields") or {}, ensure_ascii=False, default=str)
        if row["timesteps"]:  # a model's own list (genbatch.json), as one cell of numbers
            row["timesteps"] = " ".join(map(str, row["timesteps"]))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS + ["fields"])
    for columns, dtype in ((_INT_COLUMNS, "Int64"), (_UINT_COLUMNS, "UInt64"), (_FLOAT_COLUMNS, "Float64")):
        for column in columns:
            frame[column] = frame[column].astype(dtype)
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("string")
    return [write_atomic(Path(out) / "report.csv", lambda p: frame.to_csv(p, index=False), root=out),
            write_atomic(Path(out) / "report.parquet", lambda p: frame.to_parquet(p, index=False), root=out)]


def command_line() -> list[str]:
    return [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else []

"""The machine-readable summaries of an output folder: run.json and report.csv/.parquet.

Both tables are rebuilt from the ledger (latest record per key), so they are always
consistent with it, whichever runs wrote it.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .echo import shown_bare
from .ledger import current_records, iter_records
from .writer import write_atomic

TABLE_COLUMNS = [
    "status", "key", "file", "index", "row", "line", "k", "id", "prompt", "negative_prompt", "seed", "steps",
    "guidance_scale", "width", "height", "scheduler", "timesteps", "model", "model_fingerprint", "backend", "device", "dtype",
    "batch_size", "seconds", "finished_at", "bytes", "sha256", "error", "run_id", "manifest",
]


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


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n").encode())


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
    for column in ("index", "row", "line", "k", "steps", "width", "height", "batch_size", "bytes"):
        frame[column] = frame[column].astype("Int64")
    frame["seed"] = frame["seed"].astype("UInt64")
    for column in ("guidance_scale", "seconds"):
        frame[column] = frame[column].astype("Float64")
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("string")
    written = []
    for name, save in (("report.csv", lambda p: frame.to_csv(p, index=False)),
                       ("report.parquet", lambda p: frame.to_parquet(p, index=False))):
        final = Path(out) / name
        temp = final.with_name(f".{name}.tmp-{os.getpid()}")
        save(temp)
        os.replace(temp, final)
        written.append(final)
    return written


def command_line() -> list[str]:
    # an argument that is not valid UTF-8 (a file name's bytes, as surrogates) is escaped
    return [shown_bare(a, 1 << 16) for a in (Path(sys.argv[0]).name, *sys.argv[1:])] if sys.argv else []

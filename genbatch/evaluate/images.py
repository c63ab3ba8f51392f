"""The images an evaluation reads: a run's done images, from its ledger, and their groups.

An image is evaluated when its latest ledger record is "done" and its file is on disk
with the recorded size (:func:`genbatch.store.ledger.done_records`). Each one is identified in
the feature caches by its job key and the sha256 of its file, so an image regenerated
under the same key (``--force``) is computed again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from genbatch.errors import GenbatchError
from genbatch.manifest.fields import JOB_FIELDS
from genbatch.store.ledger import done_records, iter_records, ledger_path

# --by names that are ledger fields; any other name is a manifest column (record["fields"])
RECORD_FIELDS = ("model", *JOB_FIELDS, "model_fingerprint", "backend", "device", "dtype", "manifest")


@dataclass(frozen=True)
class EvalImage:
    key: str
    path: Path
    file: str
    prompt: str
    seed: int | None
    record: dict[str, Any]

    @property
    def cache_id(self) -> str:
        return f"{self.key}:{(self.record.get('sha256') or '')[:16]}"

    def pixels(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB."""
        try:
            with Image.open(self.path) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError) as err:
            raise GenbatchError(
                f"{self.path}: cannot read this image ({err}); regenerate it with "
                "`genbatch run ... --force` or delete it so the ledger no longer counts it"
            ) from None


def run_images(out: Path) -> list[EvalImage]:
    """The run's done images in ledger order; a bad folder or an empty run is a GenbatchError."""
    out = Path(out)
    if not ledger_path(out).is_file():
        raise GenbatchError(f"{out}: no genbatch.jsonl here; is this the --out folder of a genbatch run?")
    done = done_records(out)
    if not done:
        seen = sum(1 for _ in iter_records(out))
        raise GenbatchError(
            f"{out}: no done images to evaluate (the ledger has {seen} records, "
            "none done with its image on disk); run `genbatch run` first"
        )
    return [
        EvalImage(
            key=key, path=out / r["file"], file=r["file"], prompt=str(r.get("prompt", "")), seed=r.get("seed"), record=r
        )
        for key, r in done.items()
    ]


def group_value(record: dict[str, Any], name: str) -> Any:
    if name in RECORD_FIELDS:
        return record.get(name)
    return (record.get("fields") or {}).get(name)


def group_images(images: list[EvalImage], by: list[str]) -> list[tuple[dict[str, Any], list[EvalImage]]]:
    """Images grouped by the values of the ``by`` fields, groups in order of first image.
    A name no image has is an error that lists the names that would work."""
    for name in by:
        if name not in RECORD_FIELDS and not any(name in (i.record.get("fields") or {}) for i in images):
            columns = sorted({c for i in images for c in (i.record.get("fields") or {})})
            raise GenbatchError(
                f"--by {name!r}: no done image has this field; use one of "
                f"{', '.join(RECORD_FIELDS)} or a manifest column ({', '.join(columns) or 'none'})"
            )
    groups: dict[tuple, tuple[dict[str, Any], list[EvalImage]]] = {}
    for image in images:
        values = {name: group_value(image.record, name) for name in by}
        key = tuple(repr(v) for v in values.values())
        groups.setdefault(key, (values, []))[1].append(image)
    return list(groups.values())

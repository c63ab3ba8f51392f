"""The report's streamed view of the ledger is the in-memory one: same records, same order."""

from __future__ import annotations

import json
import random
from pathlib import Path

from genbatch.report.scan import scan_folder
from genbatch.store.ledger import (
    current_records,
    iter_current_offsets,
    iter_current_records,
    iter_records,
    read_record_at,
)


def _ledger(out: Path, seed: int, n: int = 400) -> None:
    """Runs, reruns, failures turned done, files written over by another key, keyless rows."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        index = rng.randrange(60)
        status = rng.choice(["done", "done", "done", "failed", "skipped"])
        record = {
            "key": f"k{index:03d}-{rng.randrange(3)}",
            "status": status,
            "index": index,
            "k": rng.randrange(2),
            "file": f"{index:03d}.png" if status == "done" else None,
            "manifest": rng.choice(["a.csv", "b.csv"]),
            "line": index + 2,
            "prompt": f"p{index}",
        }
        if status == "skipped" and rng.random() < 0.3:
            record["key"] = f"skip-{index}"
        lines.append(json.dumps(record))
        if rng.random() < 0.05:
            lines.append("not json")
    (out / "genbatch.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_streamed_current_records_match_the_in_memory_ones(tmp_path: Path):
    for seed in range(20):
        _ledger(tmp_path, seed)
        expected = current_records(list(iter_records(tmp_path, warn=lambda _: None)))
        assert list(iter_current_records(tmp_path)) == expected, seed
        with open(tmp_path / "genbatch.jsonl", "rb") as handle:
            assert [read_record_at(handle, offset) for offset, _ in iter_current_offsets(tmp_path)] == expected


def test_scan_sorts_each_list_into_job_order_with_offsets_only(tmp_path: Path):
    _ledger(tmp_path, 7)
    for index in range(60):
        (tmp_path / f"{index:03d}.png").write_bytes(b"x" if index % 5 else b"")
    (tmp_path / "010.png").unlink()  # a done record whose image is gone: missing

    scan = scan_folder(tmp_path)

    expected = current_records(list(iter_records(tmp_path, warn=lambda _: None)))
    done = [r for r in expected if r["status"] == "done"]
    cards = [r for r, _ in scan.records("cards")]
    missing = [r for r, _ in scan.records("missing")]
    assert sorted(map(json.dumps, cards + missing)) == sorted(map(json.dumps, done))
    assert [r["file"] for r in missing] == ["010.png"] * len(missing)
    assert [(r["index"], r["k"]) for r in cards] == sorted((r["index"], r["k"]) for r in cards)
    skipped = [(r["manifest"], r["line"]) for r, _ in scan.records("skipped")]
    assert skipped == sorted(skipped) and len(skipped) == sum(r["status"] == "skipped" for r in expected)
    failed = [r for r, _ in scan.records("failed")]
    assert len(failed) == sum(r["status"] == "failed" for r in expected)
    assert scan.count("cards") == len(cards) and scan.ledger_lines == len(
        (tmp_path / "genbatch.jsonl").read_text().splitlines()
    )

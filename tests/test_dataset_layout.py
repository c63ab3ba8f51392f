"""An output folder is a Hugging Face `imagefolder` data set: metadata.jsonl beside the images,
sub-folders from {bucket}, and genbatch's own files kept out of the way."""

from __future__ import annotations

import json

import pytest
from helpers import FAST, genbatch, images, ledger


def test_a_run_loads_with_datasets_imagefolder(tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,category\n" + "".join(f"prompt {i},c{i % 2}\n" for i in range(5)))
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, *FAST, "--name-template", "{bucket:04d}/{index:07d}.png")
    assert result.exit_code == 0, result.output
    assert genbatch("report", out, "--contact-sheet").exit_code == 0
    assert sorted(p.relative_to(out).as_posix() for p in images(out)) == (
        [
            "0000/0000000.png",
            "0000/0000001.png",
            "0000/0000002.png",
            "0000/0000003.png",
            "0000/0000004.png",
            "contact-sheet-001.png",
        ]
    )
    lines = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    records = {r["file"]: r for r in ledger(out)}
    assert sorted(line["file_name"] for line in lines) == sorted(records)
    assert all(line["seed"] == records[line["file_name"]]["seed"] for line in lines)

    datasets = pytest.importorskip("datasets")
    data = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert data.num_rows == 5  # the contact sheet and thumbnails are not part of it
    assert sorted(data["prompt"]) == [f"prompt {i}" for i in range(5)]
    assert data[0]["image"].size == (64, 64)


def test_bucket_is_the_index_in_thousands(tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("a prompt\n")
    out = tmp_path / "out"
    plan = json.loads(
        genbatch(
            "run",
            manifest,
            "--out",
            out,
            *FAST,
            "--num-images",
            "3",
            "--dry-run",
            "--json",
            "--name-template",
            "{bucket}-{index}",
        ).stdout
    )
    assert [job["file"] for job in plan["jobs"]] == ["0-0.png", "0-1.png", "0-2.png"]

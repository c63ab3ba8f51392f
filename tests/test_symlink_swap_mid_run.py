"""A folder of --out swapped for a symlink while a run writes into it: every later write there is
refused (the job fails, naming the link), nothing lands outside --out, and a rerun after the folder
is put back finishes the run."""

from __future__ import annotations

import hashlib
import json

import pytest
from helpers import FAST, genbatch, images

import genbatch.engine.writer as writer_module
from genbatch.store.ledger import read_ledger

ROWS = 16
SWAP_AFTER = 8


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(ROWS)))
    return path


@pytest.fixture
def elsewhere(tmp_path):
    folder = tmp_path / "elsewhere"
    (folder / "b").mkdir(parents=True)  # so a write through a swapped "a/" has a "b/" to land in
    return folder


def outside_untouched(folder) -> bool:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == ["b"]


@pytest.mark.parametrize(
    "template, swapped",
    [
        ("sub/{index:06d}.png", "sub"),  # the image's own folder
        ("a/b/{index:06d}.png", "a/b"),  # the image's own folder, two deep
        ("a/b/{index:06d}.png", "a"),  # a folder above the image's folder
    ],
)
def test_a_folder_swapped_for_a_symlink_mid_run_gets_no_more_writes(
    tmp_path, manifest, elsewhere, monkeypatch, template, swapped
):
    out = tmp_path / "out"
    real = writer_module.write_image
    written = []

    def swap_after_eight(*args):
        if len(written) == SWAP_AFTER:  # between two images: the folder moves, a link takes its place
            (out / swapped).rename(out / f"{swapped}-moved")
            (out / swapped).symlink_to(elsewhere, target_is_directory=True)
        written.append(args)
        return real(*args)

    monkeypatch.setattr(writer_module, "write_image", swap_after_eight)
    run = ["run", manifest, "--out", out, "--name-template", template, "--batch-size", "1", "--workers", "1"]
    result = genbatch(*run, *FAST[:-1], "--json")

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert outside_untouched(elsewhere)
    counts = json.loads(result.stdout)["counts"]
    assert counts["done"] == SWAP_AFTER and counts["failed"] == ROWS - SWAP_AFTER
    failed = [r for r in read_ledger(out) if r["status"] == "failed"]
    assert len(failed) == ROWS - SWAP_AFTER
    for record in failed:
        assert f"{out / swapped} is a symlink to {elsewhere}, outside the output folder" in record["error"]
        assert "\n" not in record["error"]

    # put the folder back: the rerun writes the rest
    (out / swapped).unlink()
    (out / f"{swapped}-moved").rename(out / swapped)
    monkeypatch.setattr(writer_module, "write_image", real)
    again = genbatch(*run, *FAST[:-1], "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["done"] == ROWS - SWAP_AFTER
    done = [r for r in read_ledger(out) if r["status"] == "done"]
    assert len(done) == ROWS == len(images(out))
    for record in done:
        assert hashlib.sha256((out / record["file"]).read_bytes()).hexdigest() == record["sha256"]
    assert outside_untouched(elsewhere)

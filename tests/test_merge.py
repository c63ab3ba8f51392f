"""genbatch merge: the output folders of --shard runs become one, as if one host had run it all."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
from helpers import FAST, genbatch, images, ledger, pixels


@pytest.fixture
def manifest(shard_runs):
    return shard_runs / "p.txt"


def done_by_file(out):
    return {r["file"]: r["key"] for r in ledger(out) if r["status"] == "done"}


def test_merge_of_two_shards_equals_one_unsharded_run(tmp_path, manifest, shards):
    whole = tmp_path / "whole"
    assert genbatch("run", manifest, "--out", whole, *FAST).exit_code == 0
    into = tmp_path / "merged"
    result = genbatch("merge", *shards, "--into", into, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 8 and summary["linked"] == 8 and summary["copied"] == 0

    assert all(done_by_file(s) for s in shards)  # each shard had some of the work
    assert done_by_file(into) == done_by_file(whole)
    keys = [r["key"] for r in ledger(into)]
    assert len(keys) == len(set(keys)) == 8
    assert [p.name for p in images(into)] == [p.name for p in images(whole)]
    for merged, single in zip(images(into), images(whole)):
        assert np.array_equal(pixels(merged), pixels(single))
    # hard links: the merged image is the shard's file, not a copy
    for record in ledger(into):
        source = tmp_path / record["merged_from"] / record["file"]
        assert os.path.samefile(into / record["file"], source)
    assert (into / "report.html").is_file() and (into / "report.csv").is_file()

    # a rerun in the merged folder has nothing left to do
    rerun = genbatch("run", manifest, "--out", into, *FAST, "--json")
    assert rerun.exit_code == 0 and json.loads(rerun.stdout)["counts"]["done"] == 0


def test_merging_again_changes_nothing_and_copies_across_filesystems(tmp_path, shards, monkeypatch):
    into = tmp_path / "merged"

    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)  # as when --into is on another filesystem
    first = genbatch("merge", *shards, "--into", into, "--json", "--no-html")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["copied"] == 8
    record = ledger(into)[0]
    assert not os.path.samefile(into / record["file"], tmp_path / record["merged_from"] / record["file"])
    before = (into / "genbatch.jsonl").read_bytes()
    again = genbatch("merge", *shards, "--into", into, "--json", "--no-html")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["in_place"] == 8
    assert (into / "genbatch.jsonl").read_bytes() == before


def test_two_images_under_one_name_are_refused_before_anything_is_written(tmp_path, manifest, shards):
    other = tmp_path / "other"  # other steps: other jobs, the same file names
    assert (
        genbatch(
            "run", manifest, "--out", other, "--model", "tiny-random", "--steps", "3", "--quiet", "--shard", "1/2"
        ).exit_code
        == 0
    )
    into = tmp_path / "merged"
    result = genbatch("merge", shards[0], other, "--into", into)
    assert result.exit_code == 2
    assert "different images under one file name" in result.output
    assert str(shards[0]) in result.output and str(other) in result.output
    assert not into.exists()


def test_a_ledger_path_outside_its_folder_is_never_followed(tmp_path, shards):
    path = shards[0] / "genbatch.jsonl"
    records = ledger(shards[0])
    (tmp_path / "stolen.png").write_bytes((shards[0] / records[0]["file"]).read_bytes())
    records[0]["file"] = "../stolen.png"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    into = tmp_path / "merged"
    result = genbatch("merge", *shards, "--into", into, "--json", "--no-html")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 7  # that line is passed over: its job is still to do
    assert records[0]["key"] not in {r["key"] for r in ledger(into)}
    assert not any(p.name == "stolen.png" for p in into.rglob("*"))


def test_a_folder_without_a_ledger_is_refused(tmp_path, shards):
    (tmp_path / "empty").mkdir()
    result = genbatch("merge", shards[0], tmp_path / "empty", "--into", tmp_path / "merged")
    assert result.exit_code == 2 and "no genbatch.jsonl here" in result.output

"""genbatch merge checks every shard before it writes anything: a ledger line without an index,
a symlink where an image should be, a damaged copy of an image. It never leaves a half-merged
folder, never links a symlink, and never takes a damaged copy over a good one."""

from __future__ import annotations

import hashlib
import json
import shutil

from helpers import genbatch, ledger


def write_ledger(out, records) -> None:
    (out / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_ledger_line_with_a_null_index_is_reported_and_nothing_is_half_merged(tmp_path, shards):
    records = ledger(shards[1])
    records[-1]["index"] = None
    write_ledger(shards[1], records)
    into = tmp_path / "merged"

    result = genbatch("merge", *shards, "--into", into, "--json", "--no-html")

    assert result.exit_code == 0, result.output
    line = len(records)
    assert f'{shards[1] / "genbatch.jsonl"}:{line}: skipped: "index" is null, expected a whole number' in result.stderr
    assert json.loads(result.stdout)["images"] == 7  # that job is still to do
    merged = ledger(into)
    assert len(merged) == 7 and records[-1]["key"] not in {r["key"] for r in merged}
    assert all((into / r["file"]).is_file() for r in merged)


def test_a_symlinked_shard_image_is_refused_before_anything_is_written(tmp_path, shards):
    record = ledger(shards[0])[0]
    image = shards[0] / record["file"]
    (shards[0] / "real").mkdir()
    image.rename(shards[0] / "real" / image.name)
    image.symlink_to(f"real/{image.name}")  # relative: hard-linked as it is, it would dangle in --into
    into = tmp_path / "merged"

    result = genbatch("merge", *shards, "--into", into)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"error: {image} is a symlink" in result.stderr and "real image files" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not into.exists()


def duplicate_first_image(shards) -> tuple[dict, list]:
    """The first image of shard 1 also in shard 2 (as after a job ran on both hosts)."""
    record = ledger(shards[0])[0]
    shutil.copyfile(shards[0] / record["file"], shards[1] / record["file"])
    write_ledger(shards[1], ledger(shards[1]) + [record])
    return record, [shard / record["file"] for shard in shards]


def damage(path) -> None:
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF  # same size, other bytes
    path.write_bytes(bytes(data))


def test_of_two_copies_of_an_image_the_one_that_matches_its_ledger_is_merged(tmp_path, shards):
    record, (first, second) = duplicate_first_image(shards)
    damage(first)
    into = tmp_path / "merged"

    result = genbatch("merge", *shards, "--into", into, "--json", "--no-html")

    assert result.exit_code == 0, result.output
    assert f"{first}: its bytes do not match the sha256" in result.stderr and str(second) in result.stderr
    assert sha256(into / record["file"]) == record["sha256"] == sha256(second)
    (merged,) = [r for r in ledger(into) if r["key"] == record["key"]]
    assert merged["merged_from"] == str(shards[1])


def test_when_no_copy_of_an_image_matches_its_ledger_merge_refuses(tmp_path, shards):
    record, copies = duplicate_first_image(shards)
    for copy in copies:
        damage(copy)
    into = tmp_path / "merged"

    result = genbatch("merge", *shards, "--into", into)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert all(str(copy) in result.stderr for copy in copies) and record["key"] in result.stderr
    assert not into.exists()

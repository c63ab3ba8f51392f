"""`genbatch verify OUT`: every done image against the sha256 its ledger line recorded."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import FAST, genbatch, ledger, pixels


@pytest.fixture
def out(tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,seed\na red fox,1\na lighthouse,2\nan owl,3\n", encoding="utf-8")
    folder = tmp_path / "out"
    result = genbatch("run", manifest, "--out", folder, *FAST)
    assert result.exit_code == 0, result.output
    return folder


def files(out):
    return sorted(r["file"] for r in ledger(out) if r["status"] == "done")


def test_a_clean_folder_verifies(out):
    # genbatch's own files are not images of the run: thumbnails, contact sheets, temp files
    assert genbatch("report", out, "--contact-sheet", "--cols", "2", "--rows", "1").exit_code == 0
    assert (out / "contact-sheet-001.png").exists() and any((out / ".genbatch-thumbs").iterdir())
    (out / f".{files(out)[0]}.tmp-1234abcd").write_bytes(b"half an image")
    result = genbatch("verify", out)
    assert result.exit_code == 0, result.output
    assert f"{out}: 3 images checked: 0 missing, 0 changed, 0 unrecorded (all match the ledger)" in result.output


def test_a_changed_byte_a_missing_file_and_an_unrecorded_image_are_found(out):
    changed, missing, kept = files(out)
    data = bytearray((out / changed).read_bytes())
    data[len(data) // 2] ^= 0x01  # same size, one bit
    (out / changed).write_bytes(bytes(data))
    (out / missing).unlink()
    (out / "sub").mkdir()
    shutil.copy(out / kept, out / "sub" / "stray.webp")
    result = genbatch("verify", out)
    assert result.exit_code == 1
    assert f"missing: {missing}\nchanged: {changed}\nunrecorded: sub/stray.webp\n" in result.output
    as_json = json.loads(genbatch("verify", out, "--json").stdout)
    assert as_json == {
        "out": str(out),
        "ok": False,
        "checked": 3,
        "missing": [missing],
        "changed": [changed],
        "unrecorded": ["sub/stray.webp"],
    }


def test_a_rerun_record_wins_and_bad_ledger_lines_are_skipped(out):
    first = files(out)[0]
    record = next(r for r in ledger(out) if r["file"] == first)
    with open(out / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(dict(record, status="failed", file=None)) + "\n")  # the key's latest: failed
        handle.write(json.dumps(dict(record, key=["not", "text"])) + "\n")
    result = genbatch("verify", out)
    assert result.exit_code == 1
    assert f"unrecorded: {first}" in result.output  # no current done record names it any more
    assert 'genbatch.jsonl:5: skipped: "key" is a list, expected text' in result.output


def test_a_replaced_file_and_a_folder_without_a_ledger(out, tmp_path):
    victim = files(out)[0]
    (out / victim).unlink()
    (out / victim).symlink_to(out / files(out)[1])  # same bytes elsewhere is not the file written
    result = genbatch("verify", out)
    assert result.exit_code == 1 and f"missing: {victim}" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = genbatch("verify", empty)
    assert result.exit_code == 2 and "no genbatch.jsonl here" in result.output


def test_run_verify_regenerates_what_does_not_match(out, tmp_path):
    manifest = tmp_path / "p.csv"
    changed = files(out)[1]
    original = pixels(out / changed)
    data = bytearray((out / changed).read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / changed).write_bytes(bytes(data))
    plain = genbatch("run", manifest, "--out", out, "--dry-run", "--json", *FAST)
    assert json.loads(plain.stdout)["counts"]["to_generate"] == 0  # size alone says done
    dry = genbatch("run", manifest, "--out", out, "--dry-run", "--json", "--verify", *FAST)
    assert json.loads(dry.stdout)["counts"]["to_generate"] == 1
    result = genbatch("run", manifest, "--out", out, "--verify", *FAST[:-1])
    assert result.exit_code == 0, result.output
    assert (
        f"verify: 1 done images no longer match their ledger sha256 and are generated again: {changed}" in result.output
    )
    assert abs(pixels(out / changed) - original).max() <= 1  # the same seed again: the same image (batch of 1)
    assert genbatch("verify", out).exit_code == 0

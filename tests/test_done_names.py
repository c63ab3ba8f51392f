"""A pending job never takes the file of a done image that belongs to another job key: it is
given another name (``-k`` and the start of its key), said once in the run's output."""

from __future__ import annotations

import hashlib
import json

from helpers import FAST, genbatch, images, ledger


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _done(out) -> list[dict]:
    return [r for r in ledger(out) if r["status"] == "done"]


def _shifted(tmp_path):
    """``a cat,5`` run once; then a row with steps=3 added above it."""
    manifest, out = tmp_path / "prompts.csv", tmp_path / "out"
    manifest.write_text("prompt,seed\na cat,5\n", encoding="utf-8")
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    [first] = _done(out)
    manifest.write_text("prompt,seed,steps\na cat,5,3\na cat,5,\n", encoding="utf-8")
    return manifest, out, first


def test_shifted_manifest_keeps_the_done_image_and_names_the_new_one_apart(tmp_path):
    manifest, out, first = _shifted(tmp_path)
    assert first["file"] == "000000-a-cat-5.png"
    before = _sha256(out / first["file"])

    result = genbatch("run", manifest, "--out", out, *FAST[:-1], "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["done"] == 1 and summary["counts"]["already_done"] == 1
    assert _sha256(out / first["file"]) == before  # the done image is untouched

    records = _done(out)
    assert len(records) == 2 and len({r["file"] for r in records}) == 2
    new = next(r for r in records if r["key"] != first["key"])
    assert new["steps"] == 3 and new["file"] == f"000000-a-cat-5-k{new['key'][:8]}.png"
    assert sorted(p.name for p in images(out)) == sorted(r["file"] for r in records)
    assert "note: 1 new image got another name because its name belongs to a done image" in result.stderr
    assert f"000000-a-cat-5.png -> {new['file']}" in result.stderr

    again = json.loads(genbatch("run", manifest, "--out", out, *FAST, "--json").stdout)
    assert again["counts"]["done"] == 0 and again["counts"]["already_done"] == 2
    assert {r["key"]: r["file"] for r in _done(out)} == {r["key"]: r["file"] for r in records}
    assert _sha256(out / first["file"]) == before


def test_dry_run_shows_the_name_the_run_will_use(tmp_path):
    manifest, out, first = _shifted(tmp_path)
    plan = json.loads(genbatch("run", manifest, "--out", out, *FAST[:-1], "--dry-run", "--json").stdout)
    [job] = plan["jobs"]
    assert job["file"] == f"000000-a-cat-5-k{job['key'][:8]}.png"
    text = genbatch("run", manifest, "--out", out, *FAST[:-1], "--dry-run")
    assert f"  {job['file']}  seed=5 steps=3" in text.stdout
    assert "1 new image gets another name because its name belongs to a done image" in text.stderr
    genbatch("run", manifest, "--out", out, *FAST)
    assert {r["file"] for r in _done(out)} == {first["file"], job["file"]}


def test_a_deleted_rows_image_is_kept_when_a_new_row_would_take_its_name(tmp_path):
    manifest, out = tmp_path / "prompts.csv", tmp_path / "out"
    manifest.write_text("prompt,seed\na cat,5\na dog,6\n", encoding="utf-8")
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    old = {r["file"]: _sha256(out / r["file"]) for r in _done(out)}
    # the cat row is gone; a new row gets its position, prompt and seed (and so its name)
    manifest.write_text("prompt,seed,guidance_scale\na cat,5,3\n", encoding="utf-8")
    result = genbatch("run", manifest, "--out", out, *FAST[:-1], "--json")
    assert result.exit_code == 0, result.output
    assert {file: _sha256(out / file) for file in old} == old
    new = _done(out)[-1]
    assert new["guidance_scale"] == 3 and new["file"] == f"000000-a-cat-5-k{new['key'][:8]}.png"
    assert len(images(out)) == 3


def test_force_regenerates_its_own_files_and_no_others(tmp_path):
    manifest, out, first = _shifted(tmp_path)
    genbatch("run", manifest, "--out", out, *FAST)
    files = {r["key"]: r["file"] for r in _done(out)}
    plan = json.loads(genbatch("run", manifest, "--out", out, *FAST, "--dry-run", "--force", "--json").stdout)
    assert {j["key"]: j["file"] for j in plan["jobs"]} == files
    summary = json.loads(genbatch("run", manifest, "--out", out, *FAST, "--force", "--json").stdout)
    assert summary["counts"]["done"] == 2
    assert {r["key"]: r["file"] for r in ledger(out)[-2:]} == files
    assert len(images(out)) == 2

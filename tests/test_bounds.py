"""Every number has an upper bound, checked before anything is planned: manifest cells, run
options, ``--set``, ``--vary`` and the ledger all hold a field to the one range declared for it
(genbatch.manifest.fields), and ``--vary`` cannot multiply a row past the images-per-row limit.
A run that cannot write its reports says so once, and names only the files it wrote."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from helpers import FAST, genbatch, images, ledger

import genbatch.engine.writer as writer_module
import genbatch.report.summaries as summaries_module
from genbatch.errors import GenbatchError
from genbatch.manifest.fields import FIELDS
from genbatch.manifest.read import Row
from genbatch.manifest.values import parse_value
from genbatch.plan.axes import apply_axes, parse_axes
from genbatch.runner.summary import RunSummary
from genbatch.store.ledger_checks import record_problem


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def dry_run(path: Path, tmp_path: Path, *args: str):
    result = genbatch("run", path, "--out", tmp_path / "out", "--dry-run", *FAST, *args)
    assert "Traceback" not in result.output
    return result


# --- numbers: one declared range each ---------------------------------------------------------


@pytest.mark.parametrize(
    "column, cell, shown, accepted",
    [
        ("steps", "1e99", "1e99", "a whole number from 1 to 1000"),
        ("steps", "1001", "1001", "a whole number from 1 to 1000"),
        ("width", "1e30", "1e30", "a whole number from 8 to 16384 that is a multiple of 8"),
        ("height", "16392", "16392", "a whole number from 8 to 16384 that is a multiple of 8"),
        ("guidance_scale", "1e300", "1e+300", "a number from 0 to 100"),
        ("max_sequence_length", "100000", "100000", "a whole number from 1 to 4096"),
        ("num_images", "2e9", "2e9", "a whole number from 1 to 1000000000"),
    ],
)
def test_a_number_past_its_field_bound_is_refused_by_validate(tmp_path, column, cell, shown, accepted):
    path = write(tmp_path / "p.csv", f"prompt,{column}\na,{cell}\nb,\n")
    result = genbatch("validate", path, "--max-images-per-row", "3000000000")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{path}:2:{column}: {column} {shown} is out of range; expected {accepted}" in result.stdout


def test_the_highest_value_of_each_bound_is_accepted(tmp_path):
    path = write(
        tmp_path / "p.csv",
        "prompt,steps,width,height,guidance_scale,clip_skip,seed\na,1000,16384,16384,100,12,18446744073709551615\n",
    )
    result = genbatch("validate", path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "option, says",
    [
        (["--set", "steps=1e99"], "--set:steps: steps 1e99 is out of range; expected a whole number from 1 to 1000"),
        (["--vary", "steps=20,1e99"], "--vary 'steps=20,1e99': steps 1e99 is out of range; expected a whole number "),
        (["--guidance", "1e300"], "--guidance: guidance_scale 1e+300 is out of range; expected a number from 0 to 100"),
        (["--width", "160000"], "--width: width 160000 is out of range; expected a whole number from 8 to 16384"),
        (["--steps", "1e99"], "'--steps'"),  # not a whole number at all
    ],
)
def test_run_options_are_held_to_the_same_bounds(tmp_path, option, says):
    result = dry_run(write(tmp_path / "p.csv", "prompt\na\n"), tmp_path, *option)
    assert result.exit_code == 2 and says in result.output, result.output
    assert "expected a whole number from 1 to 1000; expected" not in result.output  # said once


def test_steps_on_the_command_line_are_held_to_the_fields_bound(tmp_path):
    result = dry_run(write(tmp_path / "p.csv", "prompt\na\n"), tmp_path, "--steps", "100000")
    assert result.exit_code == 2
    assert "--steps: steps 100000 is out of range; expected a whole number from 1 to 1000" in result.output


def test_the_ledger_and_a_manifest_agree_on_every_fields_range():
    """Each numeric field of a job, at and past the ends of its declared range: a ledger line
    holding it is usable exactly when a manifest cell holding it is valid."""
    numeric = [f for f in FIELDS if f.job and f.kind in ("int", "float")]
    assert {f.name for f in numeric} >= {"seed", "steps", "guidance_scale", "width", "height", "clip_skip"}
    for spec in numeric:
        assert spec.hi is not None, f"{spec.name} has no upper bound"
        step = spec.multiple_of
        for value in (spec.lo, spec.lo - step, spec.hi, spec.hi + step, spec.lo + step, 10**30, 2**64):
            try:
                parse_value(spec.name, value)
                valid = True
            except ValueError:
                valid = False
            why = record_problem({"key": "k", "status": "failed", spec.name: value})
            assert (why is None) == valid, (spec.name, value, why)
            if why is not None:
                assert why == f'"{spec.name}" is out of range, expected {spec.accepted}'


def test_a_ledger_line_past_a_bound_is_reported_and_skipped(tmp_path):
    manifest = write(tmp_path / "p.csv", "prompt,seed\na,1\n")
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    [good] = ledger(out)
    bad = [dict(good, steps=100000), dict(good, guidance_scale=1e300), dict(good, width=16392)]
    with open(out / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(b) + "\n" for b in bad))
    result = genbatch("run", manifest, "--out", out, "--dry-run", *FAST)
    assert result.exit_code == 0 and "Traceback" not in result.output
    ledger_file = out / "genbatch.jsonl"
    for line, why in (
        (2, '"steps" is out of range, expected a whole number from 1 to 1000'),
        (3, '"guidance_scale" is out of range, expected a number from 0 to 100'),
        (4, '"width" is out of range, expected a whole number from 8 to 16384 that is a multiple of 8'),
    ):
        assert f"warning: {ledger_file}:{line}: skipped: {why}" in result.output


# --- --vary: a bounded product --------------------------------------------------------------------


def test_vary_is_bounded_before_anything_is_built(tmp_path):
    path = write(tmp_path / "p.csv", "prompt\na\n")
    hundred = ",".join(str(i) for i in range(1, 101))
    result = dry_run(path, tmp_path, "--vary", f"steps={hundred}", "--vary", f"seed={hundred}", "--vary", "cfg=1,2,3")
    assert result.exit_code == 2
    assert (
        "error: --vary: steps (100 values) x seed (100 values) x guidance_scale (3 values) make 30,000 "
        "combinations for each row, over the limit of 10,000; give fewer values, or pass --max-images-per-row N"
    ) in result.output
    ok = dry_run(path, tmp_path, "--vary", f"steps={hundred}", "--vary", f"seed={hundred}")
    assert ok.exit_code == 0 and "plan: 10000 images" in ok.output


def test_the_vary_limit_is_a_parameter_of_the_library():
    hundred = [f"seed={','.join(str(i) for i in range(100))}", f"steps={','.join(str(i) for i in range(1, 101))}"]
    with pytest.raises(GenbatchError, match="make 10,000 combinations for each row, over the limit of 9,999"):
        parse_axes(hundred, max_combinations=9_999)
    axes = parse_axes([*hundred, "cfg=1,2"], max_combinations=20_000)
    assert [len(a.values) for a in axes] == [100, 100, 2]
    with pytest.raises(GenbatchError, match="20,000 combinations"):
        apply_axes([Row(0, 2, prompt="a")], axes)  # refused before a row is made
    assert len(apply_axes([Row(0, 2, prompt="a")], axes, max_combinations=20_000)) == 20_000


# --- a full disk at the end of a run ---------------------------------------------------------------


def test_the_closing_line_names_only_what_was_written():
    summary = RunSummary(out="out", written=["run.json"])
    assert summary.format().splitlines()[2] == "images, genbatch.jsonl, run.json in out"
    assert "written" not in summary.to_dict()  # run.json is written before the rest
    everything = RunSummary(out="out").format().splitlines()[2]
    assert everything == "images, genbatch.jsonl, run.json, report.csv/.parquet, report.html in out"


def test_a_full_disk_is_said_once_and_the_closing_line_claims_nothing_unwritten(tmp_path, monkeypatch):
    manifest = write(tmp_path / "p.txt", "".join(f"prompt {i}\n" for i in range(4)))
    out = tmp_path / "out"
    real = writer_module.write_image
    calls = []

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_after_two(*args):
        calls.append(args)
        return full() if len(calls) > 2 else real(*args)

    monkeypatch.setattr(writer_module, "write_image", full_after_two)
    monkeypatch.setattr(summaries_module, "write_atomic", full)
    result = genbatch("run", manifest, "--out", out, "--batch-size", "1", "--workers", "1", *FAST[:-1])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.count("the disk is full") == 1, result.stderr
    assert f"images, genbatch.jsonl in {out}" in result.stderr
    assert not (out / "run.json").exists() and len(images(out)) == 2

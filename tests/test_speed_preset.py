"""``--speed fast``: the speed options a model and a device take, set for the user where they set
none, recorded as those options are, and measured against exact mode with ``genbatch compare``
on prompts held out from everything else in the suite: the stated bounds of docs/speed.md."""

from __future__ import annotations

import json

from helpers import genbatch, ledger

# prompts no other test uses, at Flux.1-dev's 28 steps
HELD_OUT = [
    ("a lighthouse on a cliff at dusk", 101),
    ("a bowl of ramen seen from above", 102),
    ("an old bicycle against a brick wall", 103),
    ("a snowy pine forest", 104),
    ("a red sports car on a wet street", 105),
    ("a portrait of a cat wearing glasses", 106),
]
BOUNDS = ("--min-psnr", "60", "--min-ssim", "0.99")  # docs/speed.md states these for the tiny Flux


def held_out(tmp_path):
    manifest = tmp_path / "held-out.csv"
    manifest.write_text("prompt,seed\n" + "".join(f"{p},{s}\n" for p, s in HELD_OUT), encoding="utf-8")
    return manifest


def test_fast_stays_within_its_stated_bounds_of_exact_mode(tiny_family, tmp_path):
    flux, manifest = tiny_family("flux"), held_out(tmp_path)
    common = ("run", manifest, "--model", flux, "--steps", "28", "--batch-size", "3")
    assert genbatch(*common, "--out", tmp_path / "exact", "--quiet").exit_code == 0
    fast = genbatch(*common, "--speed", "fast", "--out", tmp_path / "fast")
    assert fast.exit_code == 0, fast.output
    # on a CPU: a step cache; no fp8 and no compilation, each said once
    assert fast.stderr.count("--speed fast: no fp8 weights") == 1
    assert "--speed fast: no regional compilation" in fast.stderr
    records = ledger(tmp_path / "fast")
    assert {(r["cache"], r["cache_threshold"]) for r in records} == {("first-block", 0.12)}
    assert json.loads((tmp_path / "fast" / "run.json").read_text())["settings"]["speed"] == "fast"

    compared = genbatch("compare", tmp_path / "exact", tmp_path / "fast", "--json", *BOUNDS)
    assert compared.exit_code == 0, compared.output
    summary = json.loads(compared.stdout)
    print(f"\nfigures: --speed fast vs exact on the held-out prompts: {summary['summary']}")
    assert summary["summary"]["paired"] == len(HELD_OUT)
    assert summary["summary"]["max_abs"] >= 1  # the cache skipped work: not the exact images


def test_fast_on_a_model_that_takes_no_cache_is_exact_mode_and_says_why(tiny_family, tmp_path):
    manifest, sd = held_out(tmp_path), tiny_family("sd")
    assert genbatch("run", manifest, "--model", sd, "--steps", "2", "--out", tmp_path / "o", "--quiet").exit_code == 0
    fast = genbatch("run", manifest, "--model", sd, "--steps", "2", "--speed", "fast", "--out", tmp_path / "o")
    assert fast.exit_code == 0, fast.output
    assert "--speed fast: no step cache" in fast.stderr
    assert "6 of 6 images are already done" in fast.stdout + fast.stderr  # the same jobs: nothing to redo


def test_options_the_user_sets_win_over_the_preset(tiny_family, tmp_path):
    manifest = held_out(tmp_path)
    result = genbatch(
        "run", manifest, "--model", tiny_family("flux"), "--steps", "2", "--speed", "fast",
        "--cache", "taylorseer", "--out", tmp_path / "o", "--quiet", "--limit", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = ledger(tmp_path / "o")[0]
    assert record["cache"] == "taylorseer" and record.get("cache_threshold") is None
    bad = genbatch("run", manifest, "--speed", "turbo", "--out", tmp_path / "b")
    assert bad.exit_code == 2 and "--speed 'turbo': expected exact or fast" in bad.stderr

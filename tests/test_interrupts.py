"""Kills, signals and concurrent runs against real `genbatch run` processes."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter

import pandas as pd
import pytest
from helpers import genbatch_process, images, ledger
from PIL import Image

SLOW = ["--model", "tiny-random", "--steps", "2", "--batch-size", "2"]


def wait_for_ledger(out, lines: int, process, timeout: float = 120) -> None:
    """Until the ledger has ``lines`` lines; a ``process`` that ends before fails at once, with its stderr."""
    deadline = time.monotonic() + timeout
    path = out / "genbatch.jsonl"
    while time.monotonic() < deadline:
        if path.exists() and path.read_text(encoding="utf-8").count("\n") >= lines:
            return
        if process.poll() is not None:
            raise AssertionError(
                f"the run ended ({process.returncode}) before {path} had {lines} lines:\n"
                f"{process.stderr.read()[-3000:]}"
            )
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {lines} lines")


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"prompt number {i}\n" for i in range(12)))
    return path


def test_kill_9_at_random_moments_then_rerun_gives_the_planned_set(tmp_path, manifest):
    out = tmp_path / "out"
    rng = random.Random(1234)
    for attempt in range(3):
        process = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet")
        wait_for_ledger(out, 1 + attempt * 2, process) if attempt else time.sleep(rng.uniform(3.0, 6.0))
        time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        process.wait()
        # Whatever moment the kill hit: no partial file under a final name,
        # and no ledger line for an image that is not on disk.
        for file in images(out):
            with Image.open(file) as image:
                image.load()
        path = out / "genbatch.jsonl"  # not there if the kill came before the first image
        for line in (path.read_text(encoding="utf-8") if path.exists() else "").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line; the next run repairs it
            assert (out / record["file"]).exists()
    final = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet", "--json")
    stdout, stderr = final.communicate(timeout=300)
    assert final.returncode == 0, stderr
    records = [r for r in ledger(out) if r["status"] == "done"]
    assert Counter(r["key"] for r in records).most_common(1)[0][1] == 1, "a key was recorded twice"
    assert len(records) == 12
    assert sorted(p.name for p in images(out)) == sorted(r["file"] for r in records)
    assert not list(out.rglob("*.tmp-*"))


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_finishes_the_batch_flushes_and_exits(tmp_path, manifest, sig, code):
    out = tmp_path / "out"
    process = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet", "--json")
    wait_for_ledger(out, 1, process)
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    done = [r for r in ledger(out) if r["status"] == "done"]
    assert 0 < len(done) < 12
    assert all((out / r["file"]).exists() for r in done)
    assert json.loads((out / "run.json").read_text())["exit_code"] == code


def test_second_run_on_the_same_out_exits_at_once(tmp_path):
    manifest = tmp_path / "long.txt"  # long enough that the first run is still going, however slow the machine
    manifest.write_text("".join(f"prompt number {i}\n" for i in range(2000)))
    out = tmp_path / "out"
    first = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet")
    try:
        wait_for_ledger(out, 1, first)
        began = time.monotonic()
        second = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet")
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 2
        assert "another genbatch run is writing to" in stderr and "--wait" in stderr
        # The lock is taken before the manifest is read or torch imported: the answer is quick.
        assert time.monotonic() - began < 10
    finally:
        first.kill()
        first.wait()
    # The killed run's lock does not block the next one.
    rerun = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet", "--limit", "2")
    rerun.communicate(timeout=300)
    assert rerun.returncode == 0


def test_wait_queues_behind_the_running_one(tmp_path, manifest):
    out = tmp_path / "out"
    first = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet")
    wait_for_ledger(out, 1, first)
    second = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet", "--wait", "--json")
    stdout, stderr = second.communicate(timeout=300)
    assert first.wait(timeout=60) == 0
    assert second.returncode == 0, stderr
    assert json.loads(stdout)["counts"]["already_done"] == 12


def test_kill_9_in_the_report_step_leaves_complete_files_and_a_rerun_rebuilds(tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("".join(f"prompt number {i}\n" for i in range(40)))
    out = tmp_path / "out"
    process = genbatch_process("run", manifest, "--out", out, *SLOW[:-1], "8", "--quiet")
    deadline = time.monotonic() + 300
    while not (out / "run.json").exists() and time.monotonic() < deadline:  # run.json comes just before the reports
        time.sleep(0.002)
    process.kill()
    process.wait()
    # Whatever was being written: a report file is there whole or not at all, thumbnails decode.
    if (out / "report.csv").exists():
        assert len(pd.read_csv(out / "report.csv")) == 40
    if (out / "report.parquet").exists():
        assert len(pd.read_parquet(out / "report.parquet")) == 40
    if (out / "metadata.jsonl").exists():
        assert len((out / "metadata.jsonl").read_text().splitlines()) == 40
    if (out / "report.html").exists():
        assert (out / "report.html").read_text(encoding="utf-8").rstrip().endswith("</html>")
    for thumb in (out / ".genbatch-thumbs").glob("*.webp"):
        with Image.open(thumb) as image:
            image.load()
    rerun = genbatch_process("run", manifest, "--out", out, *SLOW, "--quiet", "--json")
    stdout, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert json.loads(stdout)["counts"]["already_done"] == 40
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    assert len(pd.read_csv(out / "report.csv")) == 40 and (out / "report.html").exists()

"""`--out s3://bucket/prefix`: runs, resumes, verify, merge, report, grid and manifests in object
storage, against a real S3 API (moto's server on 127.0.0.1, started by the fixtures)."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import FAST, genbatch, genbatch_process, images, pixels
from PIL import Image

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def prompts(folder, count: int, name: str = "p.txt"):
    manifest = folder / name
    manifest.write_text("".join(f"a shape number {i}\n" for i in range(count)))
    return manifest


def records(s3, bucket: str, prefix: str) -> list[dict]:
    text = s3.read(bucket, f"{prefix}/genbatch.jsonl").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def object_pixels(s3, bucket: str, key: str) -> np.ndarray:
    with Image.open(io.BytesIO(s3.read(bucket, key))) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a_run_into_a_bucket_puts_images_ledger_and_reports_and_a_rerun_does_nothing(s3, tmp_path):
    bucket = s3.new_bucket()
    manifest = prompts(tmp_path, 4)
    before = s3.requests.copy()
    result = genbatch("run", manifest, "--out", f"s3://{bucket}/run", *FAST)
    assert result.exit_code == 0, result.output
    made = s3.requests - before
    assert made["PUT"] >= 8 and made["GET"] < 4  # an image and a thumbnail each; the report reads none back
    keys = s3.keys(bucket, "run")
    done = [r for r in records(s3, bucket, "run") if r["status"] == "done"]
    assert len(done) == 4 and len({r["key"] for r in done}) == 4
    for record in done:  # each image is in the bucket with the recorded size
        assert keys[record["file"]] == record["bytes"]
    # the ledger was compacted into genbatch.jsonl, the lock released; the reports are there
    assert not [k for k in keys if k.startswith("genbatch.ledger/")]
    assert ".genbatch.lock" not in keys
    assert {"run.json", "report.html", "report.csv", "report.parquet", "metadata.jsonl"} <= set(keys)
    assert len([k for k in keys if k.startswith(".genbatch-thumbs/")]) == 4
    assert json.loads(s3.read(bucket, "run/run.json"))["counts"]["done"] == 4
    html = s3.read(bucket, "run/report.html").decode()
    assert all(f".genbatch-thumbs/{r['key']}.webp" in html for r in done)  # the cards show the thumbnails

    # the same pixels as a run into a local folder
    local = tmp_path / "local"
    assert genbatch("run", manifest, "--out", local, *FAST).exit_code == 0
    for record in done:
        assert np.array_equal(object_pixels(s3, bucket, f"run/{record['file']}"), pixels(local / record["file"]))

    again = genbatch("run", manifest, "--out", f"s3://{bucket}/run/", *FAST)  # a trailing / is the same prefix
    assert again.exit_code == 0
    assert len(records(s3, bucket, "run")) == 4  # nothing generated again, nothing recorded twice
    assert genbatch("verify", f"s3://{bucket}/run").exit_code == 0


def test_a_manifest_read_from_the_bucket(s3, tmp_path):
    bucket = s3.new_bucket()
    s3.client().put_object(Bucket=bucket, Key="manifests/p.csv", Body=b"prompt,seed\na red circle,7\na blue square,8\n")
    result = genbatch("run", f"s3://{bucket}/manifests/p.csv", "--out", f"s3://{bucket}/out", *FAST)
    assert result.exit_code == 0, result.output
    done = [r for r in records(s3, bucket, "out") if r["status"] == "done"]
    assert sorted(r["seed"] for r in done) == [7, 8]
    assert {r["manifest"] for r in done} == {f"s3://{bucket}/manifests/p.csv"}
    # validate reads it too; a missing object is named
    assert genbatch("validate", f"s3://{bucket}/manifests/p.csv").exit_code == 0
    missing = genbatch("validate", f"s3://{bucket}/manifests/nope.csv")
    assert missing.exit_code == 2 and f"s3://{bucket}/manifests/nope.csv: no such object" in missing.output


def test_kill_9_mid_run_then_resume_loses_nothing_and_records_each_job_once(s3, tmp_path):
    bucket = s3.new_bucket()
    manifest = prompts(tmp_path, 24)
    out = f"s3://{bucket}/run"
    process = genbatch_process("run", manifest, "--out", out, *FAST, "--batch-size", "2")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:  # killed once a checkpoint has written a ledger segment
        if any(k.startswith("genbatch.ledger/") for k in s3.keys(bucket, "run")) or process.poll() is not None:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    keys = s3.keys(bucket, "run")
    assert ".genbatch.lock" in keys  # left by the kill; a rerun on this machine takes it over
    segments = [k for k in keys if k.startswith("genbatch.ledger/")]
    assert segments and "genbatch.jsonl" not in keys
    recorded = sum(s3.read(bucket, f"run/{k}").count(b'"status": "done"') for k in segments)

    rerun = genbatch("run", manifest, "--out", out, *FAST)
    assert rerun.exit_code == 0, rerun.output
    counts = json.loads(s3.read(bucket, "run/run.json"))["counts"]
    assert counts["already_done"] == recorded > 0 and counts["done"] == 24 - recorded  # only what was missing
    done = [r for r in records(s3, bucket, "run") if r["status"] == "done"]
    assert len(done) == 24 and len({r["key"] for r in done}) == 24  # one line per job
    keys = s3.keys(bucket, "run")
    assert not [k for k in keys if k.startswith("genbatch.ledger/")] and ".genbatch.lock" not in keys
    assert genbatch("verify", out).exit_code == 0


def test_verify_finds_a_deleted_and_a_corrupted_object_and_run_verify_makes_them_again(s3, tmp_path):
    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    assert genbatch("run", prompts(tmp_path, 3), "--out", out, *FAST).exit_code == 0
    first, second, _ = sorted(r["file"] for r in records(s3, bucket, "run"))
    client = s3.client()
    client.delete_object(Bucket=bucket, Key=f"run/{first}")
    data = bytearray(s3.read(bucket, f"run/{second}"))
    data[-20] ^= 0xFF  # same size, one byte flipped
    client.put_object(Bucket=bucket, Key=f"run/{second}", Body=bytes(data))
    client.put_object(Bucket=bucket, Key="run/stray.png", Body=b"not ours")

    result = genbatch("verify", out, "--json")
    assert result.exit_code == 1
    found = json.loads(result.output)
    assert (found["missing"], found["changed"], found["unrecorded"]) == ([first], [second], ["stray.png"])

    rerun = genbatch("run", prompts(tmp_path, 3), "--out", out, *FAST, "--verify")
    assert rerun.exit_code == 0, rerun.output
    found = json.loads(genbatch("verify", out, "--json").output)
    assert (found["missing"], found["changed"]) == ([], [])


def test_merge_of_two_prefixes_into_a_third_and_into_a_local_folder(s3, tmp_path):
    bucket = s3.new_bucket()
    manifest = prompts(tmp_path, 6)
    for shard in (1, 2):
        result = genbatch("run", manifest, "--out", f"s3://{bucket}/shard{shard}", *FAST, "--shard", f"{shard}/2")
        assert result.exit_code == 0
    merged = genbatch("merge", f"s3://{bucket}/shard1", f"s3://{bucket}/shard2", "--into", f"s3://{bucket}/all")
    assert merged.exit_code == 0, merged.output
    done = [r for r in records(s3, bucket, "all") if r["status"] == "done"]
    assert len(done) == 6
    keys = s3.keys(bucket, "all")
    assert all(r["file"] in keys for r in done) and "report.html" in keys and ".genbatch.lock" not in keys
    assert genbatch("verify", f"s3://{bucket}/all").exit_code == 0

    local = tmp_path / "all"
    merged = genbatch("merge", f"s3://{bucket}/shard1", f"s3://{bucket}/shard2", "--into", local)
    assert merged.exit_code == 0, merged.output
    assert len(images(local)) == 6 and genbatch("verify", local).exit_code == 0
    # the sources are as they were
    assert genbatch("verify", f"s3://{bucket}/shard1").exit_code == 0


def test_report_and_grid_read_from_the_bucket(s3, tmp_path):
    bucket = s3.new_bucket()
    out = f"s3://{bucket}/cmp"
    manifest = prompts(tmp_path, 2)
    run = genbatch("run", manifest, "--out", out, *FAST, "--vary", "steps=1,2")
    assert run.exit_code == 0, run.output
    s3.client().delete_object(Bucket=bucket, Key="cmp/report.html")

    report = genbatch("report", out, "--contact-sheet")
    assert report.exit_code == 0, report.output
    assert f"{out}/report.html" in report.output
    keys = s3.keys(bucket, "cmp")
    assert {"report.html", "report.csv", "contact-sheet-001.png"} <= set(keys)
    html = s3.read(bucket, "cmp/report.html").decode()
    for record in records(s3, bucket, "cmp"):  # every card links to its image beside the report
        assert record["file"] in html
    with Image.open(io.BytesIO(s3.read(bucket, "cmp/contact-sheet-001.png"))) as sheet:
        assert np.asarray(sheet.convert("L")).std() > 5  # made from the images' pixels, not blanks

    grid = genbatch("grid", out, "--rows", "prompt", "--cols", "steps")
    assert grid.exit_code == 0, grid.output
    made = [k for k in s3.keys(bucket, "cmp") if k.startswith(".genbatch-grids/") and k.endswith(".png")]
    assert len(made) == 1
    with Image.open(io.BytesIO(s3.read(bucket, f"cmp/{made[0]}"))) as picture:
        assert picture.width > 64 and picture.height > 64

    scored = genbatch("eval", out, "--metrics", "diversity", "--device", "cpu", "--quiet")
    assert scored.exit_code == 0, scored.output
    evaluation = json.loads(s3.read(bucket, "cmp/eval.json"))
    assert "diversity" in json.dumps(evaluation) and "evaluation" in s3.read(bucket, "cmp/report.html").decode().lower()
    again = genbatch("eval", out, "--metrics", "diversity", "--device", "cpu", "--quiet")
    assert again.exit_code == 0  # with the feature cache it put back into the prefix
    assert any(k.startswith(".genbatch-eval/") for k in s3.keys(bucket, "cmp"))


def test_a_second_driver_is_refused_while_the_lock_is_held_and_a_dead_ones_lock_is_taken_over(s3, tmp_path):
    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    manifest = prompts(tmp_path, 1)
    held = {"token": "x", "host": os.uname().nodename, "pid": os.getpid(), "renewed_at": time.time()}
    s3.client().put_object(Bucket=bucket, Key="run/.genbatch.lock", Body=json.dumps(held).encode())
    refused = genbatch("run", manifest, "--out", out, *FAST)
    assert refused.exit_code != 0
    assert f"another genbatch run is writing to {out}" in refused.output and f"process {os.getpid()}" in refused.output
    assert set(s3.keys(bucket, "run")) == {".genbatch.lock"}  # nothing written

    dead = dict(held, pid=2**22 + 12345)  # no such process on this machine
    s3.client().put_object(Bucket=bucket, Key="run/.genbatch.lock", Body=json.dumps(dead).encode())
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    stale = dict(held, host="elsewhere", renewed_at=time.time() - 3600)  # a lost node's, not renewed for an hour
    s3.client().put_object(Bucket=bucket, Key="run/.genbatch.lock", Body=json.dumps(stale).encode())
    assert genbatch("run", manifest, "--out", out, *FAST, "--force").exit_code == 0
    assert ".genbatch.lock" not in s3.keys(bucket, "run")


def test_bad_buckets_and_hostile_ledgers_get_messages_and_write_nowhere_else(s3, tmp_path):
    manifest = prompts(tmp_path, 1)
    missing = genbatch("run", manifest, "--out", "s3://no-such-bucket-here/run", *FAST)
    assert missing.exit_code == 2 and "the bucket no-such-bucket-here does not exist" in missing.output

    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    record = records(s3, bucket, "run")[0]
    hostile = [dict(record, key="k" * 16, file=name) for name in ("../escape.png", "/etc/passwd", "a/../../b.png")]
    ledger = s3.read(bucket, "run/genbatch.jsonl") + b"".join(json.dumps(r).encode() + b"\n" for r in hostile)
    s3.client().put_object(Bucket=bucket, Key="run/genbatch.jsonl", Body=ledger)
    checked = genbatch("verify", out)  # the lines are skipped, each named by the object it came from
    assert checked.exit_code == 0
    assert f"warning: {out}/genbatch.jsonl:2: skipped: \"file\" '../escape.png' is not a path inside" in checked.output
    before = set(os.listdir(tmp_path.parent))
    assert genbatch("report", out, "--contact-sheet").exit_code == 0
    assert genbatch("grid", out, "--rows", "prompt", "--cols", "seed").exit_code == 0
    assert set(os.listdir(tmp_path.parent)) == before
    assert not [k for k in s3.keys(bucket) if "escape" in k or "passwd" in k or k.endswith("/b.png")]


@pytest.mark.slow
def test_the_ray_engine_writes_into_the_bucket_from_its_workers(s3, tmp_path, genbatch_home):
    """Workers put the images (and thumbnails) themselves; the driver alone writes the ledger's
    segments; the pixels are the local engine's."""
    pytest.importorskip("ray")
    bucket = s3.new_bucket()
    manifest = prompts(tmp_path, 6)
    env = dict(os.environ, GENBATCH_HOME=str(genbatch_home), RAY_worker_niceness="0")
    driver = genbatch_process(
        "run", manifest, "--out", f"s3://{bucket}/ray", *FAST, "-b", "2", "--engine", "ray", "--ray-workers", "2",
        env=env,
    )  # fmt: skip
    _, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr[-3000:]
    summary = json.loads(s3.read(bucket, "ray/run.json"))
    assert summary["engine"] == "ray" and summary["counts"]["done"] == 6
    assert [w["images"] > 0 for w in summary["workers"]] == [True, True]  # two worker processes wrote
    done = [r for r in records(s3, bucket, "ray") if r["status"] == "done"]
    assert len(done) == 6 and len({r["key"] for r in done}) == 6
    local = tmp_path / "local"
    assert genbatch("run", manifest, "--out", local, *FAST, "-b", "2").exit_code == 0
    for record in done:
        assert np.array_equal(object_pixels(s3, bucket, f"ray/{record['file']}"), pixels(local / record["file"]))
    assert genbatch("verify", f"s3://{bucket}/ray").exit_code == 0


def test_two_drivers_started_at_once_on_one_prefix_one_runs_and_the_other_says_why(s3, tmp_path):
    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    manifest = prompts(tmp_path, 4)
    drivers = [genbatch_process("run", manifest, "--out", out, *FAST) for _ in range(2)]
    results = [(d.wait(timeout=300), d.stderr.read()) for d in drivers]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert f"another genbatch run is writing to {out}" in refused
    done = [r for r in records(s3, bucket, "run") if r["status"] == "done"]
    assert len(done) == 4 and len({r["key"] for r in done}) == 4


def test_a_driver_whose_lock_was_taken_over_knows_it(s3):
    """A driver cut off for longer than its lease (another one took the lock over) sees it at its
    next renewal, so its run stops instead of writing beside the new one."""
    from genbatch.bucket import open_bucket
    from genbatch.store.bucket_lock import BucketLock

    bucket = open_bucket(f"s3://{s3.new_bucket()}/run")
    with BucketLock(bucket, wait=False, lease=0.8) as lock:
        assert not lock.lost
        other = {"token": "another", "host": "elsewhere", "pid": 1, "renewed_at": time.time(), "lease_seconds": 60}
        bucket.put(".genbatch.lock", json.dumps(other).encode())
        deadline = time.monotonic() + 10
        while not lock.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.lost
    assert json.loads(bucket.get(".genbatch.lock"))["token"] == "another"  # the new holder's lock is left alone


def test_a_run_whose_lock_is_taken_over_stops_and_leaves_the_ledger_to_the_new_holder(s3, tmp_path, monkeypatch):
    from genbatch.store import bucket_lock, segments

    monkeypatch.setattr(bucket_lock, "LEASE", 1.0)  # renewed every 0.25 s
    monkeypatch.setattr(segments.SegmentLedger, "checkpoint_every", 0.1)
    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    other = {"token": "another", "host": "elsewhere", "pid": 1, "renewed_at": time.time() + 600}
    locks: list[bucket_lock.BucketLock] = []
    enter, put_lines = bucket_lock.BucketLock.__enter__, segments.SegmentLedger.put_lines

    def held(lock):
        locks.append(lock)
        return enter(lock)

    def taken_over_after_the_first_segment(ledger, data):
        put_lines(ledger, data)
        if ledger.segments_written == 1:  # mid-run, however fast the machine: another driver takes the prefix
            s3.client().put_object(Bucket=bucket, Key="run/.genbatch.lock", Body=json.dumps(other).encode())
            deadline = time.monotonic() + 30
            while not locks[0].lost and time.monotonic() < deadline:
                time.sleep(0.05)

    monkeypatch.setattr(bucket_lock.BucketLock, "__enter__", held)
    monkeypatch.setattr(segments.SegmentLedger, "put_lines", taken_over_after_the_first_segment)
    result = genbatch("run", prompts(tmp_path, 400), "--out", out, *FAST, "-b", "1")
    assert result.exit_code == 1
    assert f"another genbatch run took {out} over" in result.output
    keys = s3.keys(bucket, "run")
    assert "genbatch.jsonl" not in keys and any(k.startswith("genbatch.ledger/") for k in keys)  # not compacted
    assert 0 < len([k for k in keys if k.endswith(".png")]) < 400, keys  # it stopped early
    assert json.loads(s3.read(bucket, "run/.genbatch.lock"))["token"] == "another"


def test_a_rerun_reads_the_prefixs_ledger_once_and_compacts_it_from_what_it_read(s3, tmp_path):
    """A rerun that adds images reads genbatch.jsonl once, when it starts: the compaction puts the
    ledger it read with its own lines after them, and the report's view uses that file, so a
    prefix of a million images (a GiB of ledger) is not downloaded three times a run."""
    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    manifest = prompts(tmp_path, 40)
    assert genbatch("run", manifest, "--out", out, *FAST, "-b", "4", "--limit", "30").exit_code == 0
    first = records(s3, bucket, "run")
    s3.reads.clear()
    result = genbatch("run", manifest, "--out", out, *FAST, "-b", "4", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["done"] == 10
    assert s3.reads[f"/{bucket}/run/genbatch.jsonl"] == 1
    assert not [k for k in s3.keys(bucket, "run") if k.startswith("genbatch.ledger/")]  # compacted
    ledger = records(s3, bucket, "run")
    assert ledger[:30] == first and sorted(r["index"] for r in ledger) == list(range(40))


# A driver whose store becomes unreachable after eleven PUTs (every request then fails, as after
# s3fs's retries): genbatch's CLI in a process of its own, with s3fs's request call wrapped.
GOES_DOWN = """
import s3fs
from genbatch.cli.app import main

real, puts = s3fs.S3FileSystem._call_s3, []

async def down_after_eleven_puts(self, method, *args, **kwargs):
    if len(puts) >= 11:
        raise OSError("Could not connect to the endpoint URL")
    puts.extend([method] if method == "put_object" else [])
    return await real(self, method, *args, **kwargs)

s3fs.S3FileSystem._call_s3 = down_after_eleven_puts
main()
"""


def test_a_store_that_goes_down_mid_run_stops_it_with_what_was_made_recorded(s3, tmp_path):
    """The store goes down mid-run: the run stops at once with exit 1 and says so, no traceback,
    and says that the lock it could not release is left; the next run takes it over at once (its
    holder has ended, on this machine) and makes what was not recorded."""
    from genbatch.bucket import open_bucket
    from genbatch.store.segments import ledger_bytes

    bucket = s3.new_bucket()
    out = f"s3://{bucket}/run"
    manifest = prompts(tmp_path, 30)
    first = subprocess.run(
        [sys.executable, "-c", GOES_DOWN, "run", str(manifest), "--out", out, *FAST, "-b", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 1, first.stderr
    assert (
        f"error: cannot write to {out}: OSError: Could not connect to the endpoint URL; the images written so far "
        "are kept and recorded: run the same command again to finish when the store takes writes again"
    ) in first.stderr
    assert f"warning: {out}/.genbatch.lock was left behind" in first.stderr and "Traceback" not in first.stderr
    recorded = [json.loads(line) for line in ledger_bytes(open_bucket(out)).decode().splitlines()]  # the segments
    assert recorded and all(r["status"] == "done" for r in recorded) and len(recorded) < 30

    again = genbatch("run", manifest, "--out", out, *FAST, "-b", "2", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["counts"]["already_done"] == len(recorded)
    assert sorted(r["index"] for r in records(s3, bucket, "run") if r["status"] == "done") == list(range(30))


def test_without_the_protocols_package_the_message_says_what_to_install(tmp_path):
    code = "import sys; sys.modules['s3fs'] = None; from genbatch.cli.app import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "run", str(prompts(tmp_path, 1)), "--out", "s3://bucket/prefix"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    needs = "s3://bucket/prefix: s3:// needs a package that is not installed: pip install 'genbatch[s3]'"
    assert needs in result.stderr
    assert "Traceback" not in result.stderr

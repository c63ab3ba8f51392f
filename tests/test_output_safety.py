"""genbatch never writes, renames, truncates or deletes outside --out, and a folder that can
take no more writes (a full disk, a read-only file system) stops the run cleanly."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time

import pytest
from helpers import FAST, genbatch, genbatch_process, images, ledger

import genbatch.engine.writer as writer_module
from genbatch.store.ledger import Ledger


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("".join(f"prompt {i}\n" for i in range(6)))
    return path


@pytest.fixture
def elsewhere(tmp_path):
    """A folder outside --out with a file that must survive every run."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me\n")
    (folder / "genbatch.jsonl").write_text("not a ledger\n")  # no trailing-newline repair may touch it
    return folder


def untouched(folder) -> bool:
    return (
        sorted(p.name for p in folder.iterdir()) == ["genbatch.jsonl", "precious.txt"]
        and (folder / "precious.txt").read_text() == "keep me\n"
        and (folder / "genbatch.jsonl").read_text() == "not a ledger\n"
    )


@pytest.mark.parametrize("name", ["genbatch.jsonl", "run.json", "report.csv", "report.parquet", "report.html"])
def test_a_file_symlinked_out_of_the_folder_is_refused_before_any_image(tmp_path, manifest, elsewhere, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).symlink_to(elsewhere / ("genbatch.jsonl" if name == "genbatch.jsonl" else "precious.txt"))
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 2
    assert "symlink" in result.stderr and "outside" in result.stderr and "Traceback" not in result.output
    assert images(out) == [] and untouched(elsewhere)


def test_a_torn_ledger_symlinked_elsewhere_is_never_truncated(tmp_path, manifest, elsewhere):
    (elsewhere / "genbatch.jsonl").write_text("not a ledger\ntorn")
    out = tmp_path / "out"
    out.mkdir()
    (out / "genbatch.jsonl").symlink_to(elsewhere / "genbatch.jsonl")
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 2 and "symlink" in result.stderr
    assert (elsewhere / "genbatch.jsonl").read_text() == "not a ledger\ntorn"


def test_a_thumbnails_folder_symlinked_elsewhere_is_refused(tmp_path, manifest, elsewhere):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".genbatch-thumbs").symlink_to(elsewhere, target_is_directory=True)
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 2 and "symlink" in result.stderr
    assert untouched(elsewhere)


def test_a_template_sub_folder_symlinked_elsewhere_is_refused(tmp_path, manifest, elsewhere):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(elsewhere, target_is_directory=True)
    result = genbatch("run", manifest, "--out", out, "--name-template", "sub/{index}.png", *FAST)
    assert result.exit_code == 2 and "outside" in result.stderr
    assert untouched(elsewhere)


def test_a_symlinked_image_is_never_written_through(tmp_path, manifest, elsewhere):
    out = tmp_path / "out"
    plan = json.loads(genbatch("run", manifest, "--out", out, *FAST, "--dry-run", "--json").stdout)
    out.mkdir()
    (out / plan["jobs"][0]["file"]).symlink_to(elsewhere / "precious.txt")
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 1  # that one image fails, with its reason; the others are written
    failed = [r for r in ledger(out) if r["status"] == "failed"]
    assert len(failed) == 1 and "outside" in failed[0]["error"]
    assert len(images(out)) == 6 and untouched(elsewhere)  # 5 images and the link, never followed


def test_a_symlinked_lock_and_a_ledger_folder_are_one_clear_line(tmp_path, manifest, elsewhere):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".genbatch.lock").symlink_to(elsewhere / "precious.txt")
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 2 and "lock" in result.stderr and "Traceback" not in result.output
    assert untouched(elsewhere)

    out2 = tmp_path / "out2"
    (out2 / "genbatch.jsonl").mkdir(parents=True)
    result = genbatch("run", manifest, "--out", out2, *FAST)
    assert result.exit_code == 2 and "is a folder" in result.stderr and "Traceback" not in result.output


def assert_consistent(out) -> None:
    """Every done line names an image on disk with the recorded bytes; no temp file is visible."""
    for record in ledger(out):
        if record["status"] == "done":
            data = (out / record["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == record["sha256"]
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_an_unwritable_folder_stops_the_run_cleanly_and_a_rerun_finishes(tmp_path, manifest, monkeypatch, code, words):
    out = tmp_path / "out"
    real = writer_module.write_image
    calls = []

    def failing_after_two(*args):
        calls.append(args)
        if len(calls) > 2:
            raise OSError(code, os.strerror(code))
        return real(*args)

    monkeypatch.setattr(writer_module, "write_image", failing_after_two)
    result = genbatch("run", manifest, "--out", out, "--batch-size", "1", "--workers", "1", *FAST[:-1], "--json")
    assert result.exit_code == 1
    assert words in result.stderr and "Traceback" not in result.output
    summary = json.loads(result.stdout)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 0 and words in summary["error"]["message"]
    assert json.loads((out / "run.json").read_text())["error"]["message"] == summary["error"]["message"]
    assert_consistent(out)

    monkeypatch.setattr(writer_module, "write_image", real)  # space freed
    again = json.loads(genbatch("run", manifest, "--out", out, *FAST, "--json").stdout)
    assert again["exit_code"] == 0 and again["counts"]["already_done"] == 2 and again["counts"]["done"] == 4
    assert len(images(out)) == 6
    assert_consistent(out)


def test_a_full_disk_while_appending_to_the_ledger_stops_cleanly(tmp_path, manifest, monkeypatch):
    out = tmp_path / "out"
    real = Ledger.append
    appended = []

    def full_after_three(self, record):
        appended.append(record)
        if len(appended) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, record)

    monkeypatch.setattr(Ledger, "append", full_after_three)
    result = genbatch("run", manifest, "--out", out, "--batch-size", "2", *FAST)
    assert result.exit_code == 1 and "disk is full" in result.stderr and "Traceback" not in result.output
    assert len(ledger(out)) == 3
    assert_consistent(out)
    monkeypatch.setattr(Ledger, "append", real)
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    assert len({r["key"] for r in ledger(out) if r["status"] == "done"}) == 6


def test_a_waiting_run_survives_the_first_run_removing_its_folder(tmp_path, manifest):
    """The first run made --out, then failed to load its model and removed the folder again;
    the run waiting for its lock makes the folder anew and runs."""
    out = tmp_path / "out"
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    first = genbatch_process("run", manifest, "--out", out, "--model", broken, "--quiet")
    deadline = time.monotonic() + 60
    while not (out / ".genbatch.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    second = genbatch_process("run", manifest, "--out", out, "--wait", *FAST)
    assert first.wait(timeout=120) == 2
    _, stderr = second.communicate(timeout=300)
    assert second.returncode == 0, stderr
    assert len(images(out)) == 6


def test_a_template_with_sub_folders_writes_inside_them(tmp_path, manifest):
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--name-template", "{k}/sub/{index:03d}.png", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in images(out)) == [f"0/sub/{i:03d}.png" for i in range(6)]
    assert_consistent(out)


def test_a_relative_out_folder_gets_the_images_and_the_reports(tmp_path, manifest, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = genbatch("run", "p.txt", "--out", "rel-out", "--name-template", "sub/{index}.png", *FAST)
    assert result.exit_code == 0, result.output
    out = tmp_path / "rel-out"
    assert sorted(p.relative_to(out).as_posix() for p in images(out)) == [f"sub/{i}.png" for i in range(6)]
    assert not (out / "rel-out").exists()
    assert genbatch("report", "rel-out", "--contact-sheet").exit_code == 0
    assert (out / "contact-sheet-001.png").is_file() and (out / "report.html").is_file()
    assert_consistent(out)


def test_an_out_on_a_read_only_file_system_is_refused_before_anything_runs(tmp_path, manifest, monkeypatch):
    """Found at the start (the lock cannot be taken) it is a usage error, exit 2, as the exit-code
    table says; a disk that turns read-only mid-run stops it with exit 1 (the test above)."""
    from filelock import FileLock

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(FileLock, "acquire", read_only)
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "Read-only file system" in result.stderr and str(out) in result.stderr
    assert list(out.iterdir()) == []

"""genbatch report keeps its thumbnails in OUT/.genbatch-thumbs, a real folder it made, and
deletes only the thumbnails it wrote there: never a run's image, never a file it did not make."""

from __future__ import annotations

import hashlib
import os

import pytest
from helpers import FAST, genbatch, images

from genbatch.store.ledger import read_ledger

THUMBS = ".genbatch-thumbs"
LONG_AGO = 1_000_000_000 * 1_000_000_000  # 2001: older than any report, so cleanup may take it


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "six.csv"
    path.write_text("prompt\n" + "".join(f"a cat number {i}\n" for i in range(6)))
    return path


@pytest.fixture
def webp_run(tmp_path, manifest):
    """Six WebP images: the same suffix as the thumbnails."""
    out = tmp_path / "w1"
    result = genbatch("run", manifest, "--out", out, "--format", "webp", *FAST)
    assert result.exit_code == 0, result.output
    assert len(images(out)) == 6
    return out


def intact(out) -> bool:
    """Every done image is on disk with the bytes its (current) ledger line records."""
    done = [r for r in read_ledger(out) if r["status"] == "done"]
    return len(done) == 6 and all(
        (out / r["file"]).is_file() and hashlib.sha256((out / r["file"]).read_bytes()).hexdigest() == r["sha256"]
        for r in done
    )


def test_a_thumbnails_folder_linked_back_to_the_output_folder_is_refused_and_no_image_is_deleted(webp_run):
    out = webp_run
    for thumb in (out / THUMBS).iterdir():
        thumb.unlink()
    (out / THUMBS).rmdir()
    (out / THUMBS).symlink_to(".", target_is_directory=True)  # every image now looks like a stale thumbnail

    result = genbatch("report", out)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{out / THUMBS} is a symlink" in result.stderr and "real folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert intact(out)


def test_a_thumbnails_folder_linked_out_of_the_output_folder_is_refused(tmp_path, webp_run):
    out = webp_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "holiday.webp").write_bytes(b"a photo")
    os.utime(elsewhere / "holiday.webp", ns=(LONG_AGO, LONG_AGO))
    (out / THUMBS).rename(tmp_path / "old-thumbs")
    (out / THUMBS).symlink_to(elsewhere, target_is_directory=True)

    result = genbatch("report", out)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{out / THUMBS} is a symlink" in result.stderr and "outside the output folder" in result.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["holiday.webp"]
    assert (elsewhere / "holiday.webp").read_bytes() == b"a photo"
    assert intact(out)


def test_a_thumbnails_folder_genbatch_did_not_make_is_refused(webp_run):
    out = webp_run
    for thumb in (out / THUMBS).iterdir():
        thumb.unlink()
    (out / THUMBS / "my-notes.txt").write_text("mine")
    (out / THUMBS / "0123456789abcdef.webp").write_bytes(b"mine too")

    result = genbatch("report", out)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{out / THUMBS} is not a folder genbatch made" in result.stderr and "my-notes.txt" in result.stderr
    assert sorted(p.name for p in (out / THUMBS).iterdir()) == ["0123456789abcdef.webp", "my-notes.txt"]
    assert intact(out)


def test_only_thumbnails_genbatch_wrote_are_cleaned_up(tmp_path, manifest, webp_run):
    out = webp_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "photo.webp").write_bytes(b"a photo")
    image = images(out)[0]
    planted = {
        "00000000000000000001.webp": out / image.name,  # a thumbnail-named link to a run's image
        "00000000000000000002.webp": elsewhere / "photo.webp",  # ... and to a file outside OUT
    }
    for name, target in planted.items():
        (out / THUMBS / name).symlink_to(target)
        os.utime(out / THUMBS / name, ns=(LONG_AGO, LONG_AGO), follow_symlinks=False)
    stranger = out / THUMBS / "00000000000000000003.webp"  # thumbnail-named, but not one genbatch wrote
    stranger.write_bytes((out / image.name).read_bytes())
    os.utime(stranger, ns=(LONG_AGO, LONG_AGO))
    own_before = sorted(p.name for p in (out / THUMBS).glob("*.webp") if p.name not in planted and p != stranger)
    assert len(own_before) == 6

    # a rerun with other steps makes six new images beside the first six; their owner then deletes
    # the first six, so those images' thumbnails are stale
    rerun = genbatch("run", manifest, "--out", out, "--format", "webp", "--model", "tiny-random", "--steps", "3")
    assert rerun.exit_code == 0, rerun.output
    for record in read_ledger(out):
        if record["status"] == "done" and record["steps"] == 2:
            (out / record["file"]).unlink()
    result = genbatch("report", out)

    assert result.exit_code == 0, result.output
    left = sorted(p.name for p in (out / THUMBS).iterdir() if not p.name.startswith("."))
    assert not set(own_before) & set(left)  # genbatch's own stale thumbnails went
    assert set(planted) | {stranger.name} <= set(left)  # what it did not write stayed
    assert all(os.readlink(out / THUMBS / name) == str(target) for name, target in planted.items())
    assert (elsewhere / "photo.webp").read_bytes() == b"a photo"
    assert len(images(out)) == 6


def test_a_rerun_into_a_folder_whose_thumbnails_folder_is_a_link_is_refused_before_any_image(webp_run, manifest):
    out = webp_run
    for thumb in (out / THUMBS).iterdir():
        thumb.unlink()
    (out / THUMBS).rmdir()
    (out / THUMBS).symlink_to(".", target_is_directory=True)
    (out / read_ledger(out)[0]["file"]).unlink()  # one image for the rerun to make

    result = genbatch("run", manifest, "--out", out, "--format", "webp", *FAST)

    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{out / THUMBS} is a symlink" in result.stderr
    assert len(images(out)) == 5  # nothing written, nothing deleted

"""Large manifests: the fast paths (pyarrow's CSV reader for quote-free files, columns parsed
at once, names formatted from a parsed template, the streaming resume scan) give exactly what
the exact paths give, and a stray quote in a large file is still an error at FILE:LINE:COL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import FAST, genbatch
from hypothesis import given, settings
from hypothesis import strategies as st

from genbatch.manifest import csv_fast
from genbatch.manifest.csv_reader import read_delimited
from genbatch.manifest.fields import key_values
from genbatch.manifest.raw import decode
from genbatch.manifest.read import read_manifest
from genbatch.plan import names
from genbatch.plan.planner import PlanOptions, job_key, make_plan
from genbatch.runner.options import InputOptions, OutputOptions, RunOptions
from genbatch.runner.run import load_manifest
from genbatch.store.ledger import done_index, done_records

ROWS = 20_000


def write_manifest(path: Path, rows: int = ROWS, newline: str = "\n", bad: bool = True) -> None:
    """prompt,seed,steps,guidance_scale,width,id,style with blanks, unicode, and (``bad``)
    invalid cells, a repeated id and a blank prompt here and there."""
    lines = ["prompt,seed,steps,guidance_scale,width,id,style"]
    for i in range(rows):
        prompt = f"a {['red', 'green', 'blue'][i % 3]} cube number {i // 2} café 東京" + (" " if i % 7 == 0 else "")
        seed = "" if i % 10 == 7 else str(i * 7919 % 1_000_003)
        steps = str(1 + i % 4) if i % 4 == 0 else ""
        guidance = "7.5" if i % 5 == 0 else ("1e1" if i % 11 == 0 else "")
        width = "64" if i % 6 == 0 else ""
        row_id = f"r{i}" if i % 3 == 0 else ""
        if bad and i % 997 == 5:
            seed, width, row_id = "x7", "65", "r0"
        if bad and i % 1499 == 9:
            prompt = "   "
        lines.append(f"{prompt},{seed},{steps},{guidance},{width},{row_id},  style {i % 13}")
    path.write_bytes((newline.join(lines) + newline).encode())


def rows_of(manifest):
    return [(r.index, r.line, r.fields, r.values) for r in manifest.rows]


def problems_of(manifest):
    return [str(p) for p in manifest.problems], [(s.line, s.prompt, s.reasons, s.fields) for s in manifest.skipped]


def read_both(path: Path, monkeypatch: pytest.MonkeyPatch):
    """(fast, exact) readings of ``path``; fails unless the fast path really read the first."""
    calls = []
    real = csv_fast._read_columns
    monkeypatch.setattr(csv_fast, "_read_columns", lambda *a: calls.append(1) or real(*a))
    monkeypatch.setattr(csv_fast, "MIN_BYTES", 0)
    fast = read_manifest(path)
    assert calls, "the quote-free file did not take the fast path"
    monkeypatch.setattr(csv_fast, "MIN_BYTES", 1 << 62)
    return fast, read_manifest(path)


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_fast_and_exact_readers_give_the_same_rows_and_problems(tmp_path, monkeypatch, newline):
    path = tmp_path / "big.csv"
    write_manifest(path, newline=newline)
    fast, exact = read_both(path, monkeypatch)
    assert rows_of(fast) == rows_of(exact)
    assert problems_of(fast) == problems_of(exact)
    assert len(fast.rows) > ROWS * 0.9 and fast.problems  # the bad cells were seen on both paths
    assert fast.rows[0].fields["style"] == "  style 0" and fast.rows[0].prompt.endswith("東京")


def test_fast_and_exact_readers_give_the_same_plan(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    write_manifest(path, bad=False)
    plans = []
    for min_bytes in (0, 1 << 62):
        monkeypatch.setattr(csv_fast, "MIN_BYTES", min_bytes)
        options = RunOptions(InputOptions(str(path)), OutputOptions(tmp_path / "out"), dry_run=True)
        plan = make_plan(load_manifest(options), options.plan)
        plans.append([(j.key, j.file, j.seed, j.row.line, j.params()) for j in plan.jobs])
    assert plans[0] == plans[1] and len(plans[0]) == ROWS


QUOTE_FREE = st.lists(st.sampled_from([",", " ", "\t", "\n", "\r\n", "\r", "a", "7", "é", "\x1c"]), max_size=80).map(
    "".join
)


@settings(max_examples=60, derandomize=True, deadline=None, database=None)
@given(body=QUOTE_FREE, delimiter=st.sampled_from([",", "\t"]))
def test_the_fast_reader_reads_what_the_exact_reader_reads_or_declines(body, delimiter):
    """On any quote-free text the fast reader either declines (None) or gives the exact
    reader's header, lines and cells."""
    data = f"p{delimiter}s\n{body}".encode()
    text = decode(data, "m")
    saved, csv_fast.MIN_BYTES = csv_fast.MIN_BYTES, 0
    try:
        fast = csv_fast.read_quote_free(data, text, delimiter)
    finally:
        csv_fast.MIN_BYTES = saved
    if fast is None:
        return
    exact = read_delimited(text, "m", delimiter)
    assert not exact.problems
    assert (fast.header, list(fast.lines), [list(c) for c in fast.columns]) == (
        exact.header,
        list(exact.lines),
        [list(c) for c in exact.columns],
    )


def test_a_stray_quote_in_a_large_csv_is_still_an_error_at_its_line(tmp_path):
    """The fast path is for files without quotes; one stray quote sends a large file to the
    exact reader, which refuses it at FILE:LINE:COL instead of merging rows."""
    path = tmp_path / "big.csv"
    write_manifest(path, bad=False)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[10_001] = '"' + lines[10_001]
    path.write_text("".join(lines), encoding="utf-8")
    assert path.stat().st_size > csv_fast.MIN_BYTES
    result = genbatch("validate", path)
    assert result.exit_code == 2
    assert f"{path}:10002:1:" in result.output and "swallow" in result.output


def test_the_resume_scan_keeps_what_done_records_keeps(tmp_path):
    """done_index (the runner's resume scan) is done_records without whole records."""
    out = tmp_path / "out"
    out.mkdir()
    for name, size in (("a.png", 3), ("b.png", 3), ("c.png", 5), ("d.png", 3)):
        (out / name).write_bytes(b"x" * size)
    records = [
        {"key": "k1", "status": "done", "file": "a.png", "bytes": 3, "sha256": "s1"},
        {"key": "k2", "status": "done", "file": "b.png", "bytes": 3},
        {"key": "k2", "status": "failed", "file": None, "error": "boom"},  # a later failure wins
        {"key": "k3", "status": "done", "file": "c.png", "bytes": 4},  # changed size on disk
        {"key": "k4", "status": "done", "file": "gone.png", "bytes": 3},  # missing on disk
        {"key": "k5", "status": "done", "file": "d.png", "bytes": 3},
        {"key": "k6", "status": "done", "file": "d.png", "bytes": 3, "sha256": "s6"},  # wrote over k5's file
        {"key": ["not", "text"], "status": "done", "file": "a.png"},  # a bad line, skipped
        {"key": "k7", "status": "done", "file": "a.png", "bytes": 3, "seed": "7"},  # a bad type, skipped
    ]
    (out / "genbatch.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + "not json\n")
    slim = done_index(out)
    assert list(slim) == list(done_records(out)) == ["k1", "k6"]
    assert slim["k1"] == {"key": "k1", "file": "a.png", "bytes": 3, "sha256": "s1"}


def test_a_large_ledger_is_scanned_beside_the_plan_with_the_same_result(tmp_path, monkeypatch):
    """Above resume_scan.IN_BACKGROUND_BYTES the resume scan runs in a forked process while the
    manifest is read and planned: a rerun does only what is missing, and no process is left."""
    import multiprocessing

    from genbatch.store import resume_scan

    manifest = tmp_path / "m.csv"
    manifest.write_text("prompt,seed\n" + "".join(f"shape {i},{i}\n" for i in range(6)))
    out = tmp_path / "out"
    first = genbatch("run", manifest, "--out", out, "--limit", "4", *FAST)
    assert first.exit_code == 0
    monkeypatch.setattr(resume_scan, "IN_BACKGROUND_BYTES", 0)
    begun, context = [], multiprocessing.get_context
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: begun.append(method) or context(method))
    planned = genbatch("run", manifest, "--out", out, "--dry-run", "--json", *FAST)
    assert json.loads(planned.stdout)["counts"]["already_done"] == 4
    rerun = genbatch("run", manifest, "--out", out, "--json", *FAST)
    counts = json.loads(rerun.stdout)["counts"]
    assert rerun.exit_code == 0 and (counts["already_done"], counts["done"]) == (4, 2)
    assert begun == ["fork", "fork"] and not multiprocessing.active_children()
    assert len(list(out.glob("*.png"))) == 6


def test_parsed_templates_name_files_as_the_formatter_does(tmp_path, monkeypatch):
    """Each job formats only the fields its template uses; the names (and the clean-up of
    hostile values) are those of formatting the template with every field."""
    path = tmp_path / "m.csv"
    path.write_text(
        "prompt,seed,id,extra\n"
        "a red cube,1,x/../y,a\x01b\n"
        'café ☕ 東京,2,..hidden,"q:""z"""\n'
        "CON,3,NUL.txt,   \n"
        "plain,4,,1.5\n",
        encoding="utf-8",
    )
    templates = [
        "{index:06d}-{slug}-{seed}.{ext}",
        "{bucket:04d}/{index:07d}.png",
        "{id}-{extra}-{guidance}-{k}",
        "{prompt}.jpg",
        "{extra:>12}_{line}_{row}_{model}_{key}",
        "{ext}/{index}.{ext:>5}",
        "{seed:020d}-{index:/>8}-{k:03}-{row:d}-{line:x}",
        "{slug:.5}{slug}{bucket:5d}",
    ]
    for template in templates:
        named = []
        for parsed in (True, False):
            if not parsed:
                monkeypatch.setattr(names._Template, "__init__", _unparsed)
            options = RunOptions(
                InputOptions(str(path)), OutputOptions(tmp_path / "out"), PlanOptions(name_template=template)
            )
            named.append([j.file for j in make_plan(load_manifest(options), options.plan).jobs])
            monkeypatch.undo()
        assert named[0] == named[1], template


def _unparsed(self, template, formatter, ext):
    self.template, self.formatter, self.parts = template, formatter, None


@pytest.mark.parametrize(
    "name", ["a", "a.png", "a.jpg", "a.", ".a", "a..png", "CON.png", "contact-sheet-001.png", "x" * 256, "é.webp"]
)
def test_file_names_without_folders_are_checked_as_paths_are(name):
    def outcome(make):
        try:
            return make(name, "T", "png")
        except Exception as err:  # the same refusal, by the same message
            return str(err)

    assert outcome(names._file_name) == outcome(names._folder_path)


def test_keys_made_from_shared_shapes_are_the_keys_of_the_job_fields(tmp_path):
    """Rows that differ only in prompt and seed share their key's JSON text; every key is
    still the hash of the job's own fields (here with quotes, backslashes, unicode, a NUL and
    the very stand-ins the shared text uses, in prompts and negative prompts)."""
    odd = ['say "hi"', "back\\slash", "café ☕ 東京 😀", "nul \x00 here", "\x00prompt\x00", "\x00seed\x00", "plain"]
    lines = []
    for i in range(60):
        row = {"prompt": odd[i % len(odd)] + f" {i // 3}", "n": 1 + i % 3}
        if i % 4:
            row["seed"] = i * 31
        if i % 5 == 0:
            row["negative_prompt"] = odd[(i // 5) % len(odd)]
        if i % 6 == 0:
            row["steps"] = 2 + i % 2
        lines.append(json.dumps(row))
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = RunOptions(InputOptions(str(path)), OutputOptions(tmp_path / "out"), dry_run=True)
    jobs = make_plan(load_manifest(options), options.plan).jobs
    assert len(jobs) == sum(1 + i % 3 for i in range(60))
    for job in jobs:
        fields = {"model": job.model.fingerprint, "dtype": job.dtype, "backend": job.backend}
        assert job.key == job_key({**fields, **key_values(job.values)}), job.prompt
    assert len({job.key for job in jobs}) == len(jobs)

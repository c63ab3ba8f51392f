"""Hostile and broken input, through the CLI as a user meets it: one clear line naming
FILE:LINE(:COLUMN) and exit 2, never a traceback, never a row lost without a word."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FAST, genbatch, images, ledger

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def validate(path: Path, *args: str):
    result = genbatch("validate", path, *args)
    assert "Traceback" not in result.output
    return result


def dry_run(path: Path, tmp_path: Path, *args: str):
    result = genbatch("run", path, "--out", tmp_path / "out", "--dry-run", "--json", *FAST, *args)
    assert "Traceback" not in result.output
    return result


# --- stray quotes (CSV) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, where, says",
    [
        ('a,1\n"b,2\nc,3\nd,4\n', ":3:1:", "never closed"),  # the reproduction
        ('"a green" star,1\n', ":2:10:", "follows the closing quote"),
        ('a,1\n"b,2\nc,3\nd",4\ne,5\n', ":3:1:", "swallowed rows"),  # closed again further down
        ('a,1\n"b,2\nc",3\nd,4\n', ":3:1:", "swallowed rows"),  # two rows become one
        ('a,1\n"b,2\nc,3\nd,4"\n', ":3:1:", "swallowed rows"),  # the row ends short of the header
    ],
)
def test_a_stray_quote_is_an_error_in_validate_and_run(tmp_path, body, where, says):
    path = write(tmp_path / "p.csv", "prompt,seed\n" + body)
    result = validate(path)
    assert result.exit_code == 2
    assert f"{path}{where}" in result.output and says in result.output
    run = genbatch("run", path, "--out", tmp_path / "out", *FAST)
    assert run.exit_code == 2 and says in run.output
    assert not (tmp_path / "out").exists()


def test_multi_line_prompts_and_quotes_inside_text_still_read(tmp_path):
    path = write(
        tmp_path / "p.csv",
        'prompt,seed\r\n"A cat, sitting\r\non a mat, at dusk\nin rain",4\r\n'
        'a "green" star,5\n"she said ""hi""",6\n"x\n5",7\n',
    )
    result = genbatch("run", path, "--out", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(r["prompt"] for r in ledger(tmp_path / "out")) == sorted(
        ["A cat, sitting\r\non a mat, at dusk\nin rain", 'a "green" star', 'she said "hi"', "x\n5"]
    )


def test_tsv_keeps_quotes_and_nul_or_utf16_is_refused(tmp_path):
    tsv = write(tmp_path / "p.tsv", 'prompt\tseed\n"b\t2\nc\t3\n')
    assert validate(tsv).exit_code == 0
    utf16 = tmp_path / "u.csv"
    utf16.write_bytes("prompt,seed\na,1\n".encode("utf-16-le"))
    result = validate(utf16)
    assert result.exit_code == 2 and f"{utf16}:1:2: a NUL character" in result.output


def test_a_repeated_column_is_an_error(tmp_path):
    result = validate(write(tmp_path / "p.csv", "prompt,seed,seed\na,1,2\n"))
    assert result.exit_code == 2 and ":1:3: column 'seed' repeats column 2" in result.output
    result = validate(write(tmp_path / "p.jsonl", '{"prompt": "a", "seed": 1, "prompt": "b"}\n'))
    assert result.exit_code == 2 and ":1:28: key 'prompt' appears twice in one object" in result.output


# --- values that crashed the reader or the planner --------------------------------------------


def test_huge_integers_deep_nesting_and_lone_surrogates_in_jsonl(tmp_path):
    path = write(
        tmp_path / "p.jsonl",
        "\n".join(
            [
                '{"prompt": "a", "seed": %s}' % ("9" * 5000),
                '{{"prompt": "b", "x": {}{}}}'.format("[" * 100_000, "]" * 100_000),
                '{"prompt": "c\\ud800"}',
                '{"prompt": "d \\ud83d\\ude00", "seed": 18446744073709551615}',
            ]
        )
        + "\n",
    )
    result = validate(path)
    assert result.exit_code == 2
    out = result.output
    assert f"{path}:1:25: a number with 5000 digits" in out
    assert f"{path}:2:85: JSON nested more than 64 levels deep" in out
    assert f"{path}:3:14: \\ud800 is half of a UTF-16 surrogate pair" in out
    assert "1 valid rows" in out  # the emoji, written as a surrogate pair, is fine
    run = genbatch("run", path, "--out", tmp_path / "out", *FAST)
    assert run.exit_code == 2 and "surrogate" in run.output


def test_huge_numbers_in_csv_cells(tmp_path):
    result = validate(write(tmp_path / "p.csv", f"prompt,seed,guidance_scale\na,{'9' * 4000},{'9' * 400}\n"))
    assert result.exit_code == 2
    assert "seed <a number with 4000 digits> is out of range" in result.output and len(result.output) < 2000


def test_a_manifest_path_that_is_not_utf8(tmp_path):
    if sys.platform == "darwin":
        pytest.skip("macOS file names are always UTF-8")
    raw = os.fsencode(tmp_path) + b"/caf\xe9\x1b.csv"
    with open(raw, "w") as handle:
        handle.write("prompt,seed\na,1\nb,x\n")
    name = os.fsdecode(raw)  # as sys.argv holds it: the byte as a surrogate
    result = subprocess.run([sys.executable, "-m", "genbatch", "validate", name], capture_output=True, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert b"caf\\udce9\\x1b.csv:3:seed: 'x' is not a valid seed" in result.stdout and b"Traceback" not in result.stderr
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "genbatch", "run", name, "--out", str(out), "--skip-invalid", *FAST],
        capture_output=True,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    assert {r["manifest"] for r in ledger(out)} == {
        name.encode("utf-8", "surrogateescape")
        .decode("utf-8", "replace")
        .replace("\ufffd", "\\udce9")
        .replace("\x1b", "\\x1b")
    }


def test_parquet_with_struct_and_list_columns_runs(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": ["a", "b"], "meta": [{"k": [1, 2]}, None], "tags": [["x"], []]}), path)
    result = genbatch("run", path, "--out", tmp_path / "out", "--name-template", "{index}-{tags}", *FAST)
    assert result.exit_code == 0, result.output
    records = sorted(ledger(tmp_path / "out"), key=lambda r: r["index"])
    assert records[0]["fields"] == {"prompt": "a", "meta": {"k": [1, 2]}, "tags": ["x"]}
    assert records[0]["file"] == "0-[_x_].png"  # a list as its JSON text, quotes made safe


# --- bounded plans and templates -------------------------------------------------------------


def test_num_images_per_row_is_bounded_with_an_override(tmp_path):
    path = write(tmp_path / "p.csv", "prompt,num_images\na,1000000000\n")
    result = validate(path)
    assert result.exit_code == 2
    assert f"{path}:2:num_images: num_images 1000000000 is over the limit of 10000 images per row" in result.output
    assert dry_run(path, tmp_path).exit_code == 2  # refused before a single job is built
    assert validate(path, "--max-images-per-row", "1000000000").exit_code == 0
    assert dry_run(write(tmp_path / "q.csv", "prompt\na\n"), tmp_path, "-n", "20000").exit_code == 2
    ok = dry_run(write(tmp_path / "r.csv", "prompt,n\na,3\n"), tmp_path, "--max-images-per-row", "3")
    assert ok.exit_code == 0 and json.loads(ok.stdout)["counts"]["planned"] == 3


@pytest.mark.parametrize(
    "template, says",
    [
        ("{seed:>2000000000}", "widths and precisions above 255"),
        ("{seed:0>{seed}}", "widths and precisions above 255"),  # a width taken from a value
        ("{prompt.__class__.__init__.__globals__}", "attribute and index access are not allowed"),
        ("{prompt[0]}", "attribute and index access are not allowed"),
        ("{}", "fields are named"),
        ("{prompt}{prompt}{prompt}", "file systems allow 255 bytes"),
        ("sub/{nope}", "unknown field 'nope'"),
        (".{seed}.tmp-x", "a name that begins with '.'"),
        ("x/.genbatch-thumbs/{seed}", "a name that begins with '.'"),
        ("contact-sheet-{index:03d}", "the name of a contact sheet"),
    ],
)
def test_name_templates_are_bounded(tmp_path, template, says):
    path = write(tmp_path / "p.csv", "prompt,seed\n" + "東" * 200 + ",12345\n")
    result = dry_run(path, tmp_path, "--name-template", template)
    assert result.exit_code == 2 and says in result.output, result.output


def test_windows_reserved_names_are_neutralised(tmp_path):
    path = write(tmp_path / "p.csv", "prompt,id\na,CON\nb,nul.txt\nc,com1\nd,Console\n")
    result = dry_run(path, tmp_path, "--name-template", "{id}")
    assert result.exit_code == 0, result.output
    assert [j["file"] for j in json.loads(result.stdout)["jobs"]] == [
        "_CON.png",
        "_nul.txt.png",
        "_com1.png",
        "Console.png",
    ]


def test_guidance_must_be_finite(tmp_path):
    path = write(tmp_path / "p.csv", "prompt\na\n")
    for value in ("inf", "-inf", "nan"):
        result = dry_run(path, tmp_path, "--guidance", value)
        assert result.exit_code == 2 and "--guidance" in result.output
    assert validate(path, "--set", "guidance_scale=inf").exit_code == 2


# --- escaped echoes ----------------------------------------------------------------------------

ESC = "\x1b]0;owned\x07\x1b[31m"


def test_manifest_text_is_escaped_in_every_message(tmp_path):
    model = write(tmp_path / "m.csv", f'prompt,model\na,"org/{ESC}x"\n')
    result = dry_run(model, tmp_path)
    assert result.exit_code == 2 and "hf download" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\\x1b]0;owned" in result.output
    messages = [
        validate(write(tmp_path / "a.csv", f"prompt,seed\na,{ESC}\n")),  # a bad value
        validate(write(tmp_path / "b.csv", f"id,prompt\n{ESC},a\n{ESC},b\n")),  # a repeated id
        validate(write(tmp_path / "c.csv", f"promt{ESC},seed\na,1\n")),  # no prompt column, near miss
        validate(write(tmp_path / "d.csv", f'prompt,seed\n"a"{ESC},1\n')),  # text after a quote
        validate(write(tmp_path / "e.jsonl", json.dumps({"prompt": "a", "seed": ESC}) + "\n")),
        dry_run(write(tmp_path / "f.csv", f"prompt\n{ESC}\n"), tmp_path),  # file names
        genbatch("run", write(tmp_path / "g.csv", f"prompt,{ESC}\na,1\n"), "--out", tmp_path / "o", "--dry-run", *FAST),
    ]
    for result in messages:
        assert "\x1b" not in result.output and "\x07" not in result.output, result.output


# --- the ledger is text a person can edit ---------------------------------------------------


def test_ledger_lines_of_the_wrong_types_are_reported_and_skipped(tmp_path):
    manifest = write(tmp_path / "p.csv", "prompt,seed\na,1\nb,2\n")
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, *FAST).exit_code == 0
    good = ledger(out)
    bad = [
        dict(good[0], key=["x"]),
        dict(good[0], file=5),
        dict(good[0], index="3"),
        dict(good[0], seed=-1),
        dict(good[1], file="../../elsewhere.png"),
        [1, 2],
    ]
    with open(out / "genbatch.jsonl", "a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(b) + "\n" for b in bad) + "not json\n" + '{"key": "\\ud800"}\n')
    rerun = genbatch("run", manifest, "--out", out, *FAST)
    assert rerun.exit_code == 0 and "Traceback" not in rerun.output
    ledger_file = out / "genbatch.jsonl"
    for line, why in (
        (3, '"key" is a list, expected text'),
        (4, '"file" is a number, expected text'),
        (5, '"index" is text, expected a whole number'),
        (6, '"seed" is out of range'),
        (7, "\"file\" '../../elsewhere.png' is not a path inside the output folder"),
        (8, "expected a JSON object, got a list"),
        (9, "not JSON"),
        (10, '"key" holds half of a UTF-16 surrogate pair'),
    ):
        assert f"warning: {ledger_file}:{line}: skipped: {why}" in rerun.output
    assert len(images(out)) == 2  # the good lines still say both images are done: nothing redone
    report = genbatch("report", out)
    assert report.exit_code == 0 and "Traceback" not in report.output
    assert len(__import__("pandas").read_csv(out / "report.csv")) == 2


def test_a_torn_last_ledger_line_is_still_passed_over_quietly(tmp_path):
    from genbatch.store.ledger import iter_records

    (tmp_path / "genbatch.jsonl").write_text('{"key": "a", "status": "failed"}\n{"key": "b", "sta')
    seen: list[str] = []
    assert [r["key"] for r in iter_records(tmp_path, seen.append)] == ["a"] and seen == []

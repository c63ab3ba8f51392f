"""Reading real-world manifest files: every format, awkward encodings, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from genbatch.errors import ManifestError
from genbatch.manifest.read import read_manifest


def write(path: Path, text: str, *, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def prompts(manifest) -> list[str]:
    return [row.prompt for row in manifest.rows]


def test_csv_with_bom_crlf_quotes_commas_newlines_and_no_final_newline(tmp_path):
    text = (
        "\ufeffPrompt,Seed,style\r\n"
        '"a cat, sitting",1,oil\r\n'
        '"she said ""hi""",2,\n'
        '"two\nlines",3,ink\r\n'
        "\r\n"
        "café ☕ 東京,4,x"
    )
    manifest = read_manifest(write(tmp_path / "p.csv", text))
    assert manifest.problems == []
    assert prompts(manifest) == ["a cat, sitting", 'she said "hi"', "two\nlines", "café ☕ 東京"]
    assert [row.seed for row in manifest.rows] == [1, 2, 3, 4]
    # LINE is the physical line each row starts on: the multi-line prompt shifts the next one.
    assert [row.line for row in manifest.rows] == [2, 3, 4, 7]
    # Unknown columns ride along untouched.
    assert manifest.rows[0].fields == {"Prompt": "a cat, sitting", "Seed": "1", "style": "oil"}


def test_tsv_keeps_a_leading_double_quote(tmp_path):
    text = 'prompt\tseed\n"quoted" at the start\t5\nplain\t6\n'
    manifest = read_manifest(write(tmp_path / "p.tsv", text))
    assert prompts(manifest) == ['"quoted" at the start', "plain"]


def test_jsonl_with_blank_lines_and_non_string_values(tmp_path):
    lines = [
        json.dumps({"text": "a red fox", "seed": 7, "cfg": 4.5, "tags": ["a", "b"]}),
        "",
        json.dumps({"text": "ünïcödé", "num_inference_steps": "12"}, ensure_ascii=False),
    ]
    manifest = read_manifest(write(tmp_path / "p.jsonl", "\n".join(lines) + "\n"))
    assert prompts(manifest) == ["a red fox", "ünïcödé"]
    assert manifest.rows[0].guidance_scale == 4.5
    assert manifest.rows[0].fields["tags"] == ["a", "b"]
    assert manifest.rows[1].steps == 12
    assert manifest.rows[1].line == 3


def test_txt_one_prompt_per_line_trimmed(tmp_path):
    manifest = read_manifest(write(tmp_path / "p.txt", "  first prompt  \r\n\n\tsecond\r\nthird"))
    assert prompts(manifest) == ["first prompt", "second", "third"]
    assert [row.line for row in manifest.rows] == [1, 3, 4]


def test_parquet(tmp_path):
    frame = pd.DataFrame({"caption": ["a", "b"], "seed": [1, None], "width": [512, 640]})
    frame.to_parquet(tmp_path / "p.parquet")
    manifest = read_manifest(tmp_path / "p.parquet")
    assert prompts(manifest) == ["a", "b"]
    assert [row.seed for row in manifest.rows] == [1, None]
    assert [row.width for row in manifest.rows] == [512, 640]


def test_thirty_thousand_rows(tmp_path):
    body = "".join(f'"prompt number {i}, with a comma",{i}\n' for i in range(30_000))
    manifest = read_manifest(write(tmp_path / "big.csv", "prompt,seed\n" + body))
    assert len(manifest.rows) == 30_000
    assert manifest.rows[-1].line == 30_001


def test_aliases_are_case_insensitive(tmp_path):
    text = "PROMPTS,Negative,NUM_INFERENCE_STEPS,Guidance,N,Name\nx,blurry,3,2.5,2,row-1\n"
    row = read_manifest(write(tmp_path / "p.csv", text)).rows[0]
    assert (row.prompt, row.negative_prompt, row.steps, row.guidance_scale, row.num_images, row.id) == (
        "x",
        "blurry",
        3,
        2.5,
        2,
        "row-1",
    )


def test_every_problem_is_reported_with_line_and_column(tmp_path):
    text = (
        "prompt,seed,width,steps,guidance_scale,num_images\n"
        "ok,1,512,20,7,1\n"
        ",2,512,20,7,1\n"
        "x,-1,500,0,-2,0\n"
        "y,abc,64,2.5,nan,1\n"
        "z,18446744073709551616,64,1,1,1\n"
    )
    manifest = read_manifest(write(tmp_path / "bad.csv", text))
    messages = [str(p) for p in manifest.problems]
    name = str(tmp_path / "bad.csv")
    assert f"{name}:3:prompt: the prompt is empty" in messages
    assert any(m.startswith(f"{name}:4:seed: seed -1 is out of range") for m in messages)
    assert any(m.startswith(f"{name}:4:width:") and "multiple of 8" in m for m in messages)
    assert any(m.startswith(f"{name}:4:steps:") for m in messages)
    assert any(m.startswith(f"{name}:4:guidance_scale:") for m in messages)
    assert any(m.startswith(f"{name}:4:num_images:") for m in messages)
    assert any(m.startswith(f"{name}:5:seed: 'abc' is not a valid seed") for m in messages)
    assert any(m.startswith(f"{name}:5:steps:") for m in messages)
    assert any(m.startswith(f"{name}:6:seed:") and "18446744073709551615" in m for m in messages)
    assert prompts(manifest) == ["ok"]
    assert sorted(s.line for s in manifest.skipped) == [3, 4, 5, 6]


def test_row_with_an_unquoted_comma_is_reported(tmp_path):
    manifest = read_manifest(write(tmp_path / "p.csv", "prompt\na cat, sitting\nfine\n"))
    assert [str(p) for p in manifest.problems] == [
        f"{tmp_path / 'p.csv'}:2: row has 2 fields but the header (line 1) has 1; quote fields that contain a comma"
    ]
    assert prompts(manifest) == ["fine"]


def test_missing_prompt_column_names_what_would_be_accepted(tmp_path):
    manifest = read_manifest(write(tmp_path / "p.csv", "description,seed\nx,1\n"))
    (problem,) = manifest.fatal_problems
    assert "no prompt column" in problem.message
    assert "'description'" in problem.message and "--prompt-column" in problem.message


def test_near_miss_column_gets_a_warning(tmp_path):
    manifest = read_manifest(write(tmp_path / "p.csv", "prompt,negativ_prompt\nx,blurry\n"))
    assert manifest.rows[0].negative_prompt is None
    assert any("'negativ_prompt'" in w and "did you mean 'negative_prompt'" in w for w in manifest.warnings)


def test_column_mapping_and_forced_values(tmp_path):
    text = "caption,evaluation_seed,width,height,file_name\na dog,42,640,427,0001.jpg\n"
    manifest = read_manifest(
        write(tmp_path / "coco.csv", text),
        column_map={"seed": "evaluation_seed"},
        overrides={"width": "512", "height": "512"},
    )
    row = manifest.rows[0]
    assert (row.seed, row.width, row.height) == (42, 512, 512)
    assert row.fields["file_name"] == "0001.jpg"


def test_invalid_forced_value_is_fatal(tmp_path):
    manifest = read_manifest(write(tmp_path / "p.csv", "prompt\nx\n"), overrides={"width": "500"})
    assert [str(p) for p in manifest.fatal_problems] == [
        "--set:width: width 500 is out of range; expected a whole number from 8 to 16384 that is a multiple of 8"
    ]


def test_duplicate_ids_are_rejected(tmp_path):
    manifest = read_manifest(write(tmp_path / "p.csv", "id,prompt\na,x\nb,y\na,z\n"))
    assert [str(p) for p in manifest.problems] == [f"{tmp_path / 'p.csv'}:4:id: id 'a' is already used on line 2"]


def test_not_utf8_names_line_and_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("prompt\nok\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert str(caught.value.problems[0]).startswith(f"{path}:3:4: byte 0xe9 is not valid UTF-8")


def test_invalid_json_line_names_line_and_column(tmp_path):
    path = write(tmp_path / "p.jsonl", '{"prompt": "a"}\n{"prompt": "b",}\n')
    manifest = read_manifest(path)
    assert [str(p) for p in manifest.problems] == [
        f"{path}:2:16: invalid JSON: Expecting property name enclosed in double quotes"
    ]
    assert prompts(manifest) == ["a"]

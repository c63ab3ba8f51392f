"""Job keys are pinned: a finished folder is only "done" while its keys stay the same, so any
change to how keys are made must be deliberate (and show up here), never a side effect."""

from __future__ import annotations

import json

import pytest
from helpers import genbatch

from genbatch.pipelines.model_lookup import resolve_model

# Every field a row can set, a row that sets none, a repeated prompt, an extra column.
MANIFEST = """id,prompt,negative_prompt,seed,steps,guidance_scale,width,height,n,style
a,a red circle on a blue background,,1,,,,,2,oil
b,"two green squares, side by side",blurry,18446744073709551615,3,2.5,72,56,1,
c,café ☕ 東京,,,4,0,64,64,1,ink
,plain prompt,,,,,,,1,
,plain prompt,ugly,,,7,,,1,
"""

PINNED = {
    # run options -> the keys of the six jobs, in plan order
    "": [
        "42086669df7bad93db79",
        "4c2fd6b2cb086818d9bb",
        "c7b988c3af5e80e7c86e",
        "67296eacdf6c5d524b10",
        "555ea714e4ca0becaa5e",
        "644c300b80df2c1f2ecb",
    ],
    "--scheduler EulerDiscreteScheduler --seed 5": [
        "0babd36f9e7e2f6518aa",
        "422206deabe9a2adb36a",
        "3b8013b902bd7564acac",
        "2ec55b5731b0cd561a22",
        "5ca8fd595a365024ba40",
        "1315d426e69034a9a0cd",
    ],
    "--negative nope --steps 10 --guidance 3 --width 80 --height 48 --backend onnx --dtype fp32": [
        "a7f58543a61343ddc880",
        "b25ef0243eecb34ffd80",
        "06af09da538c82825eb8",
        "b955f19207073f8bf642",
        "21f78855675df423d9dd",
        "ec17e58a81773bf9a7c8",
    ],
    "--backend torch --dtype bf16 --steps 2": [
        "c8e00f17b09a4296bc03",
        "2dac164b54c0cba276b8",
        "0c2601d5bef7735104c3",
        "8dc682227a7e3777908c",
        "989c4af4f088ef98a44e",
        "e30679176b1de97fec6d",
    ],
}

SEEDS_AND_FILES = [
    (1, "000000-a-red-circle-on-a-blue-background-1.png"),
    (2, "000001-a-red-circle-on-a-blue-background-2.png"),
    (18446744073709551615, "000002-two-green-squares-side-by-side-18446744073709551615.png"),
    (1627072680916943838, "000003-cafe-1627072680916943838.png"),
    (2217618430880620438, "000004-plain-prompt-2217618430880620438.png"),
    (490334614851588091, "000005-plain-prompt-490334614851588091.png"),
]


def planned_jobs(tmp_path, options: str) -> list[dict]:
    manifest = tmp_path / "pinned.csv"
    manifest.write_text(MANIFEST, encoding="utf-8")
    result = genbatch(
        "run", manifest, "--out", tmp_path / "out", "--model", "shapes", "--dry-run", "--json", *options.split()
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["jobs"]


def test_the_shipped_model_fingerprint_is_pinned():
    # The keys below include it; a change to the shipped weights changes every key, deliberately.
    assert resolve_model("shapes").fingerprint == "13afbf0f461f7cde"


@pytest.mark.parametrize("options", list(PINNED))
def test_job_keys_are_pinned(tmp_path, options):
    assert [job["key"] for job in planned_jobs(tmp_path, options)] == PINNED[options]


def test_seeds_and_file_names_are_pinned(tmp_path):
    assert [(job["seed"], job["file"]) for job in planned_jobs(tmp_path, "")] == SEEDS_AND_FILES

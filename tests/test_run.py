"""`genbatch run` end to end on real files: images on disk, ledger, reports, reruns, errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import FAST, genbatch, images, ledger
from PIL import Image

AWKWARD_CSV = (
    "\ufeffPrompt,seed,style\r\n"
    '"a cat, sitting",1,oil\r\n'
    '"she said ""hi""",,\n'
    '"two\nlines",3,ink\r\n'
    "\r\n"
    "café ☕ 東京,4,x"
)


@pytest.fixture
def csv_manifest(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text(AWKWARD_CSV, encoding="utf-8")
    return path


def test_run_writes_images_ledger_and_reports(tmp_path, csv_manifest):
    out = tmp_path / "out"
    result = genbatch("run", csv_manifest, "--out", out, "--batch-size", "3", *FAST)
    assert result.exit_code == 0, result.output
    files = images(out)
    assert len(files) == 4
    for file in files:
        with Image.open(file) as image:
            assert image.size == (64, 64)
    records = ledger(out)
    assert [r["status"] for r in records] == ["done"] * 4
    assert {r["prompt"] for r in records} == {"a cat, sitting", 'she said "hi"', "two\nlines", "café ☕ 東京"}
    first = next(r for r in records if r["seed"] == 1)
    assert first["fields"] == {"Prompt": "a cat, sitting", "seed": "1", "style": "oil"}
    assert first["model"] == "tiny-random" and first["backend"] == "torch" and first["batch_size"] == 3
    assert (out / first["file"]).stat().st_size == first["bytes"]

    run = json.loads((out / "run.json").read_text())
    assert run["counts"]["done"] == 4 and run["exit_code"] == 0
    assert run["versions"]["torch"]
    table = pd.read_parquet(out / "report.parquet")
    assert len(table) == 4 and set(table["status"]) == {"done"}
    assert len(pd.read_csv(out / "report.csv")) == 4


def test_png_is_self_describing(tmp_path, csv_manifest):
    out = tmp_path / "out"
    genbatch("run", csv_manifest, "--out", out, *FAST)
    record = next(r for r in ledger(out) if r["seed"] == 1)
    with Image.open(out / record["file"]) as image:
        text = image.text
    assert text["parameters"].startswith("a cat, sitting\nSteps: 2, Sampler: DDIM,")  # the A1111 name of DDIMScheduler
    assert "Seed: 1, Size: 64x64" in text["parameters"]
    meta = json.loads(text["genbatch"])
    assert meta["key"] == record["key"] and meta["model_fingerprint"] == record["model_fingerprint"]


@pytest.mark.parametrize("image_format", ["webp", "jpg"])
def test_other_image_formats(tmp_path, image_format):
    manifest = tmp_path / "p.txt"
    manifest.write_text("a lighthouse\n")
    out = tmp_path / "out"
    assert genbatch("run", manifest, "--out", out, "--format", image_format, *FAST).exit_code == 0
    (file,) = images(out)
    assert file.suffix == f".{image_format}"
    with Image.open(file) as image:
        assert json.loads(image.getexif()[0x010E])["prompt"] == "a lighthouse"


def test_every_manifest_format_runs(tmp_path):
    rows = [{"prompt": "a red circle", "seed": 5}, {"prompt": '"quoted" start', "seed": 6}]
    (tmp_path / "m.tsv").write_text("prompt\tseed\n" + "".join(f"{r['prompt']}\t{r['seed']}\n" for r in rows))
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "m.txt").write_text('a red circle\n"quoted" start\n')
    pd.DataFrame(rows).to_parquet(tmp_path / "m.parquet")
    for name in ("m.tsv", "m.jsonl", "m.txt", "m.parquet"):
        out = tmp_path / f"out-{name}"
        result = genbatch("run", tmp_path / name, "--out", out, *FAST)
        assert result.exit_code == 0, (name, result.output)
        assert sorted(r["prompt"] for r in ledger(out)) == ['"quoted" start', "a red circle"], name


def test_stdin_manifest(tmp_path):
    out = tmp_path / "out"
    result = genbatch("run", "-", "--out", out, "--format", "txt", *FAST, input="from stdin\n")
    assert result.exit_code == 0
    assert [r["prompt"] for r in ledger(out)] == ["from stdin"]


def test_rerun_generates_nothing_and_changed_steps_regenerate(tmp_path, csv_manifest):
    out = tmp_path / "out"
    genbatch("run", csv_manifest, "--out", out, *FAST)
    again = genbatch("run", csv_manifest, "--out", out, *FAST, "--json")
    summary = json.loads(again.stdout)
    assert summary["counts"] == {
        "planned": 4,
        "already_done": 4,
        "to_generate": 0,
        "batches": 0,
        "done": 0,
        "failed": 0,
        "skipped": 0,
        "not_run": 0,
    }
    assert len(ledger(out)) == 4

    changed = json.loads(
        genbatch(
            "run", csv_manifest, "--out", out, "--model", "tiny-random", "--steps", "3", "--quiet", "--json"
        ).stdout
    )
    assert changed["counts"]["done"] == 4 and changed["counts"]["already_done"] == 0
    assert len({r["key"] for r in ledger(out)}) == 8

    # the template gives the new jobs the done images' names: they are named apart
    # (-k and their key), and the first run's images stay, still done
    table = pd.read_csv(out / "report.csv")
    assert len(table) == 8 and sorted(table["steps"]) == [2] * 4 + [3] * 4
    assert all(f"-k{key[:8]}." in file for key, file in table.loc[table["steps"] == 3, ["key", "file"]].values)
    assert len(images(out)) == 8
    genbatch("report", out, "--contact-sheet")
    assert '<section id="images" data-total="8">' in (out / "report.html").read_text()
    again = json.loads(genbatch("run", csv_manifest, "--out", out, *FAST, "--json").stdout)
    assert again["counts"]["done"] == 0 and again["counts"]["already_done"] == 4


def test_deleted_image_is_regenerated(tmp_path, csv_manifest):
    out = tmp_path / "out"
    genbatch("run", csv_manifest, "--out", out, *FAST)
    victim = images(out)[0]
    victim.unlink()
    summary = json.loads(genbatch("run", csv_manifest, "--out", out, *FAST, "--json").stdout)
    assert summary["counts"]["done"] == 1 and victim.exists()


def test_force_regenerates(tmp_path, csv_manifest):
    out = tmp_path / "out"
    genbatch("run", csv_manifest, "--out", out, *FAST)
    summary = json.loads(genbatch("run", csv_manifest, "--out", out, *FAST, "--force", "--json").stdout)
    assert summary["counts"]["done"] == 4


def test_dry_run_writes_nothing(tmp_path, csv_manifest):
    out = tmp_path / "out"
    result = genbatch("run", csv_manifest, "--out", out, *FAST[:-1], "--dry-run")
    assert result.exit_code == 0
    assert "plan: 4 images, 0 already done, 4 to generate in 1 batches" in result.stdout
    assert not out.exists()


def test_invalid_manifest_exits_2_and_writes_nothing(tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("prompt,seed\nok,1\nbad,xyz\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, *FAST)
    assert result.exit_code == 2
    assert f"{manifest}:3:seed: 'xyz' is not a valid seed" in result.stderr
    assert not out.exists()


def test_skip_invalid_runs_the_rest_and_reports_skipped_rows(tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("prompt,seed\nok,1\nbad,xyz\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, *FAST, "--skip-invalid", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["counts"]["done"] == 1 and summary["counts"]["skipped"] == 1
    assert summary["skipped"][0]["line"] == 3
    skipped = [r for r in ledger(out) if r["status"] == "skipped"]
    assert skipped[0]["line"] == 3 and "not a valid seed" in skipped[0]["error"]


def test_validate_reports_all_problems(tmp_path):
    manifest = tmp_path / "bad.csv"
    manifest.write_text("prompt,seed,width\nok,1,64\n,2,64\nbad,xyz,65\n")
    result = genbatch("validate", manifest)
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"{manifest}:3:prompt: the prompt is empty",
        f"{manifest}:4:seed: 'xyz' is not a valid seed; expected a whole number from 0 to 18446744073709551615",
        f"{manifest}:4:width: width 65 is out of range; "
        "expected a whole number from 8 to 16384 that is a multiple of 8",
    ]
    good = tmp_path / "good.csv"
    good.write_text("prompt,n\nx,3\n")
    ok = genbatch("validate", good)
    assert ok.exit_code == 0 and "1 rows, 3 images, valid" in ok.stderr


@pytest.mark.parametrize("bad_id", ["../escape", "/etc/passwd", "..\\..\\win", "a/../../b"])
def test_ids_cannot_write_outside_out(tmp_path, bad_id):
    manifest = tmp_path / "p.jsonl"
    manifest.write_text(json.dumps({"id": bad_id, "prompt": "x"}) + "\n")
    out = tmp_path / "deep" / "out"
    result = genbatch("run", manifest, "--out", out, "--name-template", "{id}", *FAST)
    assert result.exit_code == 0, result.output
    (file,) = images(out)
    assert file.resolve().is_relative_to(out.resolve())
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["out"]


def test_unsafe_template_is_rejected(tmp_path, csv_manifest):
    for template in ("/tmp/{seed}", "../{seed}", "a/../../{seed}"):
        result = genbatch("run", csv_manifest, "--out", tmp_path / "out", "--name-template", template, *FAST)
        assert result.exit_code == 2 and "--name-template" in result.stderr


def test_name_template_with_manifest_column_and_clash_detection(tmp_path):
    manifest = tmp_path / "coco.csv"
    manifest.write_text("caption,file_name,width,height\na dog,000123.jpg,640,427\na cat,000456.jpg,500,333\n")
    out = tmp_path / "out"
    result = genbatch(
        "run",
        manifest,
        "--out",
        out,
        "--set",
        "width=64",
        "--set",
        "height=64",
        "--name-template",
        "{file_name}",
        "--format",
        "png",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    # The column's .jpg is swapped for the format actually written.
    assert [p.name for p in images(out)] == ["000123.png", "000456.png"]
    clash = genbatch(
        "run",
        manifest,
        "--out",
        tmp_path / "o2",
        "--set",
        "width=64",
        "--set",
        "height=64",
        "--name-template",
        "{model}",
        *FAST,
    )
    assert clash.exit_code == 2 and "same file name" in clash.stderr


def test_unknown_model_and_backend_are_usage_errors(tmp_path, csv_manifest):
    missing = genbatch("run", csv_manifest, "--out", tmp_path / "o", "--model", str(tmp_path / "nope"))
    assert missing.exit_code == 2 and f"{tmp_path / 'nope'}: no such folder" in missing.stderr
    hub = genbatch("run", csv_manifest, "--out", tmp_path / "o", "--model", "someorg/not-cached")
    assert hub.exit_code == 2 and "hf download someorg/not-cached" in hub.stderr
    backend = genbatch("run", csv_manifest, "--out", tmp_path / "o", "--backend", "tpu", *FAST)
    assert backend.exit_code == 2 and "unknown backend 'tpu'" in backend.stderr


def test_models_command_lists_builtins(tmp_path):
    result = genbatch("models", "--json")
    names = [m["name"] for m in json.loads(result.stdout)]
    assert "tiny-random" in names


def test_local_folder_model_loads_through_from_pretrained(tmp_path, tiny_model, csv_manifest):
    import shutil

    folder = tmp_path / "my-model"
    shutil.copytree(tiny_model, folder)
    out = tmp_path / "out"
    result = genbatch("run", csv_manifest, "--out", out, "--model", folder, "--steps", "2", "--quiet", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["models"][0]["path"] == str(folder)
    assert {r["model"] for r in ledger(out)} == {"my-model"}


def test_model_column_groups_rows_per_model(tmp_path, tiny_model):
    import shutil

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    manifest = tmp_path / "p.csv"
    manifest.write_text(f"prompt,model\na,\nb,{other}\nc,\nd,{other}\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, *FAST, "--json")
    assert result.exit_code == 0, result.output
    by_prompt = {r["prompt"]: r["model"] for r in ledger(out)}
    assert by_prompt == {"a": "tiny-random", "b": "other-model", "c": "tiny-random", "d": "other-model"}


def test_fingerprint_follows_weights_not_genbatch_notes(tmp_path, tiny_model):
    import shutil

    from genbatch.pipelines.model_files import fingerprint

    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    before = fingerprint(folder)
    (folder / "genbatch_export.json").write_text('{"exported_at": "today"}')
    (folder / "genbatch.json").write_text('{"steps": 9}')
    assert fingerprint(folder) == before
    weights = next(folder.glob("unet/*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert fingerprint(folder) != before

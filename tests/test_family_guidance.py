"""One meaning for guidance across families: what a model ignores of what a row or an option
asks is said once per run (and by validate, before any model loads), never silently; a value a
family does not take at all is refused at its row."""

from __future__ import annotations

import json

from helpers import genbatch


def test_a_negative_prompt_that_guidance_turns_off_is_said_once_per_run(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text(
        "prompt,negative_prompt,cfg\na red circle,blurry,1\na blue square,blurry,1\na cross,,1\n", encoding="utf-8"
    )
    sd = tiny_family("sd")
    said = "the negative prompt has no effect at guidance_scale 1 (1 or less turns guidance off)"
    checked = genbatch("validate", manifest, "--model", sd)
    assert checked.exit_code == 0, checked.output
    assert checked.stderr.count(said) == 1
    run = genbatch("run", manifest, "--model", sd, "--steps", "1", "--out", tmp_path / "o")
    assert run.exit_code == 0, run.output
    assert run.stderr.count(said) == 1
    # at a guidance that uses it, nothing is said
    manifest.write_text("prompt,negative_prompt,cfg\na red circle,blurry,5\n", encoding="utf-8")
    assert "no effect" not in genbatch("validate", manifest, "--model", sd).stderr


def test_guidance_a_model_does_not_use_is_said_not_swallowed(tiny_family, tmp_path):
    manifest = tmp_path / "p.txt"
    manifest.write_text("a red circle\n", encoding="utf-8")
    schnell = tiny_family("flux-schnell")  # Flux.1-schnell embeds no guidance
    run = genbatch("run", manifest, "--model", schnell, "--guidance", "3", "--out", tmp_path / "o", "--dry-run")
    assert run.exit_code == 0, run.output
    assert "guidance_scale is ignored: embedded guidance of a guidance-distilled model (dev); schnell ignores it" in (
        run.stderr
    )
    # the model's own default is not something the user asked for: nothing to say
    quiet = genbatch("run", manifest, "--model", schnell, "--out", tmp_path / "o", "--dry-run")
    assert "ignored" not in quiet.stderr
    # and the call a ledger line records leaves out what the model ignores
    done = genbatch("run", manifest, "--model", schnell, "--steps", "1", "--guidance", "3", "--out", tmp_path / "r")
    assert done.exit_code == 0, done.output
    record = json.loads((tmp_path / "r" / "genbatch.jsonl").read_text().splitlines()[0])
    assert "guidance_scale" not in record["call"] and record["guidance_scale"] == 3


def test_a_field_only_other_families_take_is_refused_at_its_row(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,true_cfg_scale\na red circle,4\n", encoding="utf-8")
    checked = genbatch("validate", manifest, "--model", tiny_family("sd"))
    assert checked.exit_code == 2
    assert (
        f"{manifest}:2:true_cfg_scale: SD 1.x/2.x takes no true_cfg_scale (Qwen-Image, Qwen-Image-Edit do); "
        "remove it here" in (checked.stdout + checked.stderr)
    )


def test_models_lists_every_family_with_what_its_settings_mean():
    listed = genbatch("models", "--families", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["family"]: row for row in json.loads(listed.stdout)}
    for name in ("sd", "sdxl", "flux", "qwen-image", "flux2", "z-image", "chroma", "hidream", "lumina2"):
        assert rows[name]["guidance_meaning"] and rows[name]["negative_prompt"], name
    for name in ("cogview4", "sana-sprint", "kolors", "hunyuan-image", "generic"):
        assert rows[name]["guidance_meaning"] and rows[name]["negative_prompt"], name
    assert "true_cfg_scale" in rows["qwen-image"]["takes"]
    text = genbatch("models", "--families").stdout
    assert "qwen-image" in text and "negative_prompt: turns true CFG on" in text


def test_a_max_sequence_length_the_pipeline_refuses_is_refused_at_its_row(tiny_family, tmp_path):
    manifest = tmp_path / "p.csv"
    manifest.write_text("prompt,max_sequence_length\na red circle,600\na blue square,64\n", encoding="utf-8")
    checked = genbatch("validate", manifest, "--model", tiny_family("flux"))
    assert checked.exit_code == 2
    assert f"{manifest}:2:max_sequence_length: Flux.1 takes a max_sequence_length up to 512, not 600" in checked.stdout
    assert f"{manifest}:3" not in checked.stdout

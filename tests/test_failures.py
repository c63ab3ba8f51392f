"""Failed jobs: recorded with a reason, listed, exit code 1; the rest of the run goes on.

A stand-in backend plugs in through the same registry the built-in ones use, which also
shows that the planner, writer and ledger need nothing else from a backend.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import genbatch, images, ledger

from genbatch.backends import base
from genbatch.backends.base import GeneratedImage, to_uint8


class StandInGenerator:
    backend, device, dtype = "standin", "cpu", "fp32"

    def describe(self):
        return {"providers": ["StandIn"]}

    def generate(self, jobs):
        floats = []
        for job in jobs:
            value = {"black": 0.0, "nan": np.nan}.get(job.prompt, 0.5)
            floats.append(np.full((job.height, job.width, 3), value, dtype=np.float32))
        pixels, errors = to_uint8(np.stack(floats))
        return [GeneratedImage(j, p, e) for j, p, e in zip(jobs, pixels, errors)]

    def close(self):
        pass


class StandInBackend:
    name = "standin"

    def resolve(self, device, dtype):
        return "cpu", "fp32"

    def load(self, model, **kwargs):
        return StandInGenerator()


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setitem(base._REGISTERED, "standin", f"{__name__}:StandInBackend")


def test_nan_and_black_images_are_failures_not_successes(tmp_path, standin, tiny_model):
    manifest = tmp_path / "p.txt"
    manifest.write_text("grey\nblack\nnan\nalso grey\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--backend", "standin", "--model", "tiny-random", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 2
    reasons = {f["prompt"]: f["error"] for f in summary["failures"]}
    assert "all black" in reasons["black"] and "NaN" in reasons["nan"]
    assert len(images(out)) == 2
    failed = [r for r in ledger(out) if r["status"] == "failed"]
    assert {r["prompt"] for r in failed} == {"black", "nan"} and all(r["file"] is None for r in failed)
    assert {r["providers"][0] for r in ledger(out)} == {"StandIn"}
    assert "failed: line 2" in result.stderr

    # A rerun retries only the failed jobs.
    again = json.loads(
        genbatch("run", manifest, "--out", out, "--backend", "standin", "--model", "tiny-random", "--json").stdout
    )
    assert again["counts"]["already_done"] == 2 and again["counts"]["failed"] == 2


def test_ledger_torn_by_a_kill_is_repaired(tmp_path, standin, tiny_model):
    manifest = tmp_path / "p.txt"
    manifest.write_text("one\ntwo\n")
    out = tmp_path / "out"
    genbatch("run", manifest, "--out", out, "--backend", "standin", "--model", "tiny-random", "--quiet")
    path = out / "genbatch.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # second line cut mid-write
    result = genbatch("run", manifest, "--out", out, "--backend", "standin", "--model", "tiny-random", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["counts"]["done"] == 1
    # encoding threads finish in any order, so the ledger's line order is not fixed
    assert sorted(json.loads(line)["prompt"] for line in path.read_text().splitlines()) == ["one", "two"]


def broken_model(tmp_path):
    """A model folder naming every SD component, with a UNet config but no weights:
    planning accepts it, from_pretrained fails."""
    broken = tmp_path / "broken"
    (broken / "unet").mkdir(parents=True)
    (broken / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": ["diffusers", "DDIMScheduler"],
            }
        )
    )
    (broken / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    return broken


def test_a_model_that_fails_to_load_leaves_no_trace(tmp_path):
    broken = broken_model(tmp_path)
    manifest = tmp_path / "p.txt"
    manifest.write_text("a red circle\n")

    result = genbatch("run", manifest, "--out", tmp_path / "new", "--model", broken)
    assert result.exit_code == 2
    assert f"cannot load broken from {broken}" in result.stderr
    assert not (tmp_path / "new").exists()

    # into a folder that was there already: no ledger appears, what was there stays
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    assert genbatch("run", manifest, "--out", tmp_path / "old", "--model", broken).exit_code == 2
    assert not (tmp_path / "old" / "genbatch.jsonl").exists()
    assert (tmp_path / "old" / "notes.txt").read_text() == "mine"


def test_in_a_run_of_several_models_one_that_fails_to_load_fails_its_own_jobs(tmp_path, tiny_model):
    broken = broken_model(tmp_path)
    manifest = tmp_path / "p.csv"
    manifest.write_text(f"prompt,model\nfirst,{tiny_model}\nsecond,{broken}\nthird,{tiny_model}\n")
    out = tmp_path / "out"
    result = genbatch("run", manifest, "--out", out, "--steps", "2", "--json")
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 1
    [failure] = summary["failures"]
    assert failure["prompt"] == "second" and "did not load" in failure["error"] and "broken" in failure["error"]
    assert {r["prompt"]: r["status"] for r in ledger(out)} == {"first": "done", "second": "failed", "third": "done"}
    assert (out / "run.json").exists() and (out / "report.html").exists()

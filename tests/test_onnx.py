"""genbatch export --to onnx and genbatch run --backend onnx, on the tiny noise model.

One verified export per module; a second one with forced external data. Images from the
ONNX backend must match the torch backend's for the same seeds (within one uint8 level)
and must not depend on the batch size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from genbatch.cli.app import app

PROMPTS = "prompt,seed\na red circle,11\na blue square,22\na green triangle,33\n"


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def images(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)).astype(int) for p in sorted(folder.glob("*.png"))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx")
    (folder / "prompts.csv").write_text(PROMPTS, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def exported(tiny_model: Path, workdir: Path) -> Path:
    out = workdir / "exports" / "tiny-onnx"
    result = invoke("export", "--to", "onnx", "--model", tiny_model, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def onnx_batch3(exported: Path, workdir: Path) -> Path:
    out = workdir / "onnx-b3"
    result = invoke(
        "run",
        workdir / "prompts.csv",
        "--out",
        out,
        "--backend",
        "onnx",
        "--model",
        exported,
        "--batch-size",
        "3",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return out


def test_export_has_the_diffusers_onnx_layout_and_parity_figures(exported: Path, tiny_model: Path) -> None:
    for name in (
        "model_index.json",
        "text_encoder/model.onnx",
        "unet/model.onnx",
        "vae_decoder/model.onnx",
        "vae_encoder/model.onnx",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "vae_decoder/config.json",
        "genbatch.json",
    ):
        assert (exported / name).is_file(), name
    assert json.loads((exported / "model_index.json").read_text())["_class_name"] == "OnnxStableDiffusionPipeline"
    assert json.loads((exported / "genbatch.json").read_text())["source_model"] == "tiny-random"
    info = json.loads((exported / "genbatch_export.json").read_text())
    from genbatch.pipelines.families import read_defaults
    from genbatch.pipelines.model_files import fingerprint

    assert info["source_fingerprint"] == fingerprint(tiny_model)
    assert info["opset"] == 17 and info["fp16"] is False and "onnxruntime" in info["versions"]
    parity = info["parity"]
    assert parity["passed"]
    assert all(c["max_abs_diff"] < 1e-4 for c in parity["components"].values()), parity
    assert parity["end_to_end"]["max_pixel_diff"] < 0.05, parity
    assert read_defaults(exported)["width"] == 64 and read_defaults(exported)["steps"] == 4


def test_onnx_images_match_torch_and_record_providers(onnx_batch3: Path, tiny_model: Path, workdir: Path) -> None:
    torch_out = workdir / "torch"
    result = invoke(
        "run",
        workdir / "prompts.csv",
        "--out",
        torch_out,
        "--model",
        tiny_model,
        "--batch-size",
        "3",
        "--limit",
        "2",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    on_torch, on_onnx = images(torch_out), images(onnx_batch3)
    assert len(on_torch) == 2
    for name, pixels in on_torch.items():
        assert np.abs(pixels - on_onnx[name]).max() <= 1, name  # float difference ~1e-4 of a level
    run = json.loads((onnx_batch3 / "run.json").read_text())
    assert run["backend"] == "onnx" and run["providers"] == ["CPUExecutionProvider"]
    record = json.loads((onnx_batch3 / "genbatch.jsonl").read_text().splitlines()[0])
    assert record["backend"] == "onnx" and record["providers"] == ["CPUExecutionProvider"]
    # the backend is part of a job's key: torch's finished images do not count for an onnx run
    plan = invoke(
        "run",
        workdir / "prompts.csv",
        "--out",
        torch_out,
        "--backend",
        "onnx",
        "--model",
        tiny_model,
        "--dry-run",
        "--json",
    )
    assert json.loads(plan.stdout)["counts"]["already_done"] == 0


def test_batch_size_does_not_change_images(onnx_batch3: Path, exported: Path, workdir: Path) -> None:
    out = workdir / "onnx-b1"
    result = invoke(
        "run",
        workdir / "prompts.csv",
        "--out",
        out,
        "--backend",
        "onnx",
        "--model",
        exported,
        "--batch-size",
        "1",
        "--providers",
        "CPUExecutionProvider",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    single, batched = images(out), images(onnx_batch3)
    assert single.keys() == batched.keys() and len(single) == 3
    for name in single:
        assert np.abs(single[name] - batched[name]).max() <= 1, name


def test_forced_external_data_export_loads_and_runs(tiny_model: Path, onnx_batch3: Path, workdir: Path) -> None:
    out = workdir / "exports" / "tiny-external"
    result = invoke("export", "--to", "onnx", "--model", tiny_model, "--out", out, "--external-data", "--no-verify")
    assert result.exit_code == 0, result.output
    for part in ("text_encoder", "unet", "vae_decoder", "vae_encoder"):
        assert (out / part / "model.onnx_data").stat().st_size > 0, part
    info = json.loads((out / "genbatch_export.json").read_text())
    assert info["components"]["unet"]["external_data"] and info["parity"] is None
    run_out = workdir / "onnx-external"
    result = invoke(
        "run", workdir / "prompts.csv", "--out", run_out, "--backend", "onnx", "--model", out, "--limit", "1", "--quiet"
    )
    assert result.exit_code == 0, result.output
    ((name, pixels),) = images(run_out).items()
    assert np.array_equal(pixels, images(onnx_batch3)[name])


def test_export_errors_are_one_line_and_exit_2(exported: Path, tiny_model: Path, tmp_path: Path) -> None:
    missing = invoke("export", "--to", "onnx", "--model", tmp_path / "nope", "--out", tmp_path / "o")
    assert missing.exit_code == 2 and "nope: no such folder" in missing.output
    unsupported = tmp_path / "ddpm"
    unsupported.mkdir()
    (unsupported / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "DDPMPipeline",
                "unet": ["diffusers", "UNet2DModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            }
        )
    )
    result = invoke("export", "--to", "onnx", "--model", unsupported, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "DDPMPipeline is not supported" in result.output
    assert "StableDiffusionPipeline" in result.output and "Traceback" not in result.output
    (unsupported / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionXLPipeline",
                "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            }
        )
    )
    result = invoke("export", "--to", "onnx", "--model", unsupported, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "SDXL" in result.output
    result = invoke("export", "--to", "onnx", "--model", tiny_model, "--out", exported)
    assert result.exit_code == 2 and "--overwrite" in result.output
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    result = invoke("export", "--to", "onnx", "--model", tiny_model, "--out", tmp_path / "notes", "--overwrite")
    assert result.exit_code == 2 and "only replaces an earlier export" in result.output
    assert (tmp_path / "notes" / "todo.txt").is_file()
    result = invoke("export", "--to", "onnx", "--model", exported, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "already an ONNX export" in result.output


def test_backends_refuse_each_others_folders(exported: Path, tiny_model: Path, workdir: Path, tmp_path: Path) -> None:
    result = invoke("run", workdir / "prompts.csv", "--out", tmp_path / "a", "--backend", "onnx", "--model", tiny_model)
    assert result.exit_code == 2 and "export it first: genbatch export --to onnx" in result.output
    result = invoke("run", workdir / "prompts.csv", "--out", tmp_path / "b", "--model", exported)
    assert result.exit_code == 2 and "--backend onnx" in result.output
    result = invoke(
        "run",
        workdir / "prompts.csv",
        "--out",
        tmp_path / "c",
        "--backend",
        "onnx",
        "--model",
        exported,
        "--dtype",
        "fp16",
    )
    assert result.exit_code == 2 and "fp32 export" in result.output
    result = invoke(
        "run",
        workdir / "prompts.csv",
        "--out",
        tmp_path / "d",
        "--backend",
        "onnx",
        "--model",
        exported,
        "--providers",
        "NoSuchExecutionProvider",
    )
    assert result.exit_code == 2 and "not available" in result.output


def test_failed_verification_exits_1_and_installs_nothing(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import genbatch.export.parity as export_parity

    figures = {
        "passed": False,
        "components": {"unet": {"max_abs_diff": 0.5, "tolerance": 1e-3, "passed": False}},
        "end_to_end": {
            "max_pixel_diff": 40.0,
            "mean_pixel_diff": 3.0,
            "max_uint8_diff": 40,
            "tolerance": 1.0,
            "seeds": [0],
            "steps": 4,
            "passed": False,
        },
    }
    monkeypatch.setattr(export_parity, "verify_export", lambda *args, **kwargs: figures)
    out = tmp_path / "exports" / "bad"
    result = invoke("export", "--to", "onnx", "--model", tiny_model, "--out", out)
    assert result.exit_code == 1, result.output
    assert "max abs diff 5.00e-01" in result.output and "FAILED" in result.output
    assert not out.exists() and (out.parent / "bad.unverified" / "unet" / "model.onnx").is_file()


def test_io_binding_path_gives_the_same_images(exported: Path) -> None:
    """The CUDA path binds the prompt embeddings once per batch; bound on the CPU here."""
    from genbatch.backends.onnx_backend import OnnxGenerator

    generator = OnnxGenerator(exported, device="cpu")
    args = (["a red circle", "a blue square"], ["", "blurry"], [5, 6])
    plain = generator.images(*args, steps=2, guidance_scale=5.0, height=64, width=64)
    generator.io_device = "cpu"
    bound = generator.images(*args, steps=2, guidance_scale=5.0, height=64, width=64)
    assert np.array_equal(plain, bound)


def test_resolve_device_and_dtype() -> None:
    from genbatch.backends import get_backend
    from genbatch.errors import GenbatchError

    backend = get_backend("onnx")
    device, dtype = backend.resolve("auto", "auto")
    assert device in ("cpu", "cuda") and dtype == "auto"
    assert backend.resolve("cpu", "fp16") == ("cpu", "fp16")
    with pytest.raises(GenbatchError, match="bf16"):
        backend.resolve("cpu", "bf16")
    with pytest.raises(GenbatchError, match="mps"):
        backend.resolve("mps", "auto")


def test_the_default_model_exports_and_matches_torch(tmp_path: Path) -> None:
    """The shipped default model (v-prediction, DPM-Solver++, pooled text in the time
    embedding, its own timesteps) goes through export and the ONNX loop like any SD 1.x
    pipeline."""
    from genbatch.pipelines.builtin import default_model_name

    manifest = tmp_path / "p.csv"
    manifest.write_text(
        "prompt,seed\na red circle on a blue background,1\ntwo green squares on a white background,2\n",
        encoding="utf-8",
    )
    out = tmp_path / "exported"
    result = invoke("export", "--to", "onnx", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "genbatch_export.json").read_text())["source_model"] == default_model_name()
    for backend, folder in (("torch", tmp_path / "t"), ("onnx", tmp_path / "o")):
        model = [] if backend == "torch" else ["--model", out]
        run = invoke("run", manifest, "--out", folder, "--backend", backend, *model, "--quiet")
        assert run.exit_code == 0, run.output
    on_torch, on_onnx = images(tmp_path / "t"), images(tmp_path / "o")
    assert sorted(on_torch) == sorted(on_onnx) and len(on_torch) == 2
    own = json.loads((out / "genbatch.json").read_text())["timesteps"]
    for folder in ("t", "o"):
        records = [json.loads(line) for line in (tmp_path / folder / "genbatch.jsonl").read_text().splitlines()]
        assert [r["timesteps"] for r in records] == [own["10"]] * 2
    for name in on_torch:
        assert np.abs(on_torch[name] - on_onnx[name]).max() <= 1, name

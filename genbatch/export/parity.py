"""Whether an ONNX export computes what its torch model does: each component on fixed
inputs, then whole images from the same seeds, against tolerances for fp32 and fp16."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genbatch.pipelines.families import is_xl
from genbatch.pipelines.model_files import vae_scale_factor
from genbatch.pipelines.model_lookup import ModelRef

# Tolerances: component outputs (max abs diff, relative to the output's scale) and
# end-to-end images (max abs diff in pixel levels, 0-255).
TOLERANCE = {"fp32": {"component": 1e-3, "pixels": 1.0}, "fp16": {"component": 5e-2, "pixels": 16.0}}
VERIFY_PROMPTS = ["a red circle on a white background", "two small blue squares"]
VERIFY_SEEDS = [0, 1234]


def verify_export(pipe: Any, folder: Path, ref: ModelRef, *, fp16: bool) -> dict[str, Any]:
    """Torch vs ONNX Runtime (CPU): each component on fixed inputs, then the same seeds end
    to end. Inputs use batch 3 and, for the UNet, a size other than the traced one, so the
    dynamic axes are checked too."""
    import onnxruntime as ort
    import torch

    from genbatch.export.wrappers import wrappers

    tol = TOLERANCE["fp16" if fp16 else "fp32"]
    modules = wrappers(pipe)
    components: dict[str, Any] = {}
    for part, feeds in _component_inputs(pipe).items():
        with torch.no_grad():
            expected = modules[part][0](**feeds)
        expected = (expected[0] if isinstance(expected, tuple) else expected).float().numpy()
        session = ort.InferenceSession(str(folder / part / "model.onnx"), providers=["CPUExecutionProvider"])
        got = session.run(None, {k: v.numpy() for k, v in feeds.items()})[0].astype(np.float32)
        diff = float(np.abs(got - expected).max())
        allowed = tol["component"] * max(1.0, float(np.abs(expected).max()))
        components[part] = {"max_abs_diff": diff, "tolerance": allowed, "passed": diff <= allowed}
    end_to_end = _verify_images(pipe, folder, ref, tol["pixels"])
    passed = all(c["passed"] for c in components.values()) and end_to_end["passed"]
    return {"passed": passed, "components": components, "end_to_end": end_to_end}


def _component_inputs(pipe: Any) -> dict[str, dict[str, Any]]:
    """Each component's inputs for the check: batch 3, drawn from a seeded generator."""
    import torch

    g = torch.Generator("cpu").manual_seed(42)
    unet, vae = pipe.unet.config, pipe.vae.config
    sample = unet.sample_size if isinstance(unet.sample_size, int) else unet.sample_size[0]
    factor = vae_scale_factor(vae)
    ids = pipe.tokenizer(
        VERIFY_PROMPTS + [""],
        padding="max_length",
        max_length=pipe.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids
    other = max(8, sample // 2 + 8)  # a latent size other than the traced one
    context = pipe.text_encoder.config.hidden_size
    unet_extra: dict[str, Any] = {}
    if is_xl(pipe):
        context += pipe.text_encoder_2.config.hidden_size
        unet_extra = {
            "text_embeds": torch.randn(3, pipe.text_encoder_2.config.projection_dim, generator=g),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 3),
        }
    return {
        "text_encoder": {"input_ids": ids.to(torch.int32)},
        **({"text_encoder_2": {"input_ids": ids.to(torch.int32)}} if is_xl(pipe) else {}),
        "unet": {
            "sample": torch.randn(3, unet.in_channels, other, sample, generator=g),
            "timestep": torch.tensor([999.0, 500.0, 1.0]),
            "encoder_hidden_states": torch.randn(3, ids.shape[1], context, generator=g),
            **unet_extra,
        },
        "vae_decoder": {"latent_sample": torch.randn(3, vae.latent_channels, sample, other, generator=g)},
        "vae_encoder": {
            "sample": torch.rand(3, vae.in_channels, sample * factor, sample * factor, generator=g) * 2 - 1
        },
    }


def _verify_images(pipe: Any, folder: Path, ref: ModelRef, tolerance: float) -> dict[str, Any]:
    import torch

    from genbatch.backends.latents import initial_latents
    from genbatch.backends.onnx_backend import OnnxGenerator

    d = ref.defaults
    steps, guidance = min(int(d.get("steps") or 4), 4), float(d.get("guidance_scale") or 7.5)
    width, height = int(d["width"]), int(d["height"])
    factor = pipe.vae_scale_factor
    latents = initial_latents(VERIFY_SEEDS, pipe.unet.config.in_channels, height // factor, width // factor)
    with torch.inference_mode():
        # the same latents diffusers draws from these generators (SDXL draws them itself)
        expected = pipe(
            prompt=VERIFY_PROMPTS,
            negative_prompt=[""] * len(VERIFY_PROMPTS),
            num_inference_steps=steps,
            guidance_scale=guidance,
            height=height,
            width=width,
            latents=None if is_xl(pipe) else latents,
            generator=[torch.Generator("cpu").manual_seed(s) for s in VERIFY_SEEDS],
            output_type="np",
        ).images
    onnx_run = OnnxGenerator(folder, name=ref.name, device="cpu")
    got = onnx_run.images(
        VERIFY_PROMPTS,
        [""] * len(VERIFY_PROMPTS),
        VERIFY_SEEDS,
        steps=steps,
        guidance_scale=guidance,
        height=height,
        width=width,
    )
    onnx_run.close()
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64)) * 255.0
    uint8 = np.abs(np.round(np.clip(got, 0, 1) * 255).astype(int) - np.round(np.clip(expected, 0, 1) * 255).astype(int))
    return {
        "seeds": VERIFY_SEEDS,
        "steps": steps,
        "guidance_scale": guidance,
        "size": [width, height],
        "max_pixel_diff": float(diff.max()),
        "mean_pixel_diff": float(diff.mean()),
        "max_uint8_diff": int(uint8.max()),
        "tolerance": tolerance,
        "passed": float(diff.max()) <= tolerance,
    }


def format_parity(parity: dict[str, Any] | None) -> str:
    if not parity:
        return "verification: skipped (--no-verify)"
    lines = []
    for part, c in parity["components"].items():
        lines.append(
            f"  {part:<13} max abs diff {c['max_abs_diff']:.2e}  (tolerance {c['tolerance']:.1e})"
            + ("" if c["passed"] else "  FAILED")
        )
    e = parity["end_to_end"]
    lines.append(
        f"  end to end    max pixel diff {e['max_pixel_diff']:.4f} levels, mean {e['mean_pixel_diff']:.5f}, "
        f"uint8 max {e['max_uint8_diff']}  (tolerance {e['tolerance']:g}; seeds {e['seeds']}, "
        f"{e['steps']} steps)" + ("" if e["passed"] else "  FAILED")
    )
    return "verification (torch vs ONNX Runtime CPU):\n" + "\n".join(lines)

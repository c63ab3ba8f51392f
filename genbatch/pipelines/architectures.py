"""Released model architectures with random weights, built on the device, offline.

Speed depends on shapes, not weights: a folder written by :func:`write_architecture` holds the
released configs of SD-1.5, SDXL, Flux.1-schnell or Flux.1-dev (``model_index.json``, each component's
``config.json``, the scheduler's) and locally written tokenizers, but no weights.
``genbatch run --model FOLDER`` and ``genbatch bench`` build its components from the configs
straight on the device in the run's dtype (:func:`build_pipeline`), after
``torch.manual_seed(0)``, so GPU figures can be measured without downloading gigabytes. The
images are noise. Tokenizers: genbatch's byte-level CLIP BPE and a character-level T5
Unigram vocabulary (prompts tokenize to other ids and lengths than the released ones, but
every pipeline pads to its fixed length: 77 CLIP tokens, 512 T5 tokens, so shapes match).
``quantize="nf4"`` gives the built denoiser bitsandbytes' 4-bit NF4 layers (:func:`nf4_linear_layers`),
as ``from_pretrained`` with a ``quantization_config`` does for a folder of weights.

``tiny=True`` shrinks every config (a few thousand weights) for CPU tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genbatch.errors import GenbatchError

MARKER = "random_weights"  # genbatch.json: {"random_weights": "sd15"} marks a folder built here

_CLIP_L = {
    "_class_name": "CLIPTextModel",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "vocab_size": 49408,
}
_CLIP_G = {
    "_class_name": "CLIPTextModelWithProjection",
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "max_position_embeddings": 77,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    "vocab_size": 49408,
}
_T5_XXL = {
    "_class_name": "T5EncoderModel",
    "d_model": 4096,
    "d_ff": 10240,
    "d_kv": 64,
    "num_heads": 64,
    "num_layers": 24,
    "vocab_size": 32128,
    "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "layer_norm_epsilon": 1e-6,
}
_VAE = {
    "_class_name": "AutoencoderKL",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "act_fn": "silu",
    "sample_size": 512,
}
_SD_SCHEDULE = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "steps_offset": 1}

ARCHITECTURES: dict[str, dict[str, Any]] = {
    "sd15": {
        "_class_name": "StableDiffusionPipeline",
        "defaults": {"steps": 50, "guidance_scale": 7.5, "width": 512, "height": 512},
        "unet": {
            "_class_name": "UNet2DConditionModel",
            "sample_size": 64,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
            "block_out_channels": [320, 640, 1280, 1280],
            "layers_per_block": 2,
        },
        "vae": _VAE,
        "text_encoder": _CLIP_L,
        "tokenizer": "clip",
        "scheduler": {
            "_class_name": "PNDMScheduler",
            **_SD_SCHEDULE,
            "skip_prk_steps": True,
            "set_alpha_to_one": False,
            "clip_sample": False,
        },
    },
    "sdxl": {
        "_class_name": "StableDiffusionXLPipeline",
        "defaults": {"steps": 30, "guidance_scale": 5.0, "width": 1024, "height": 1024},
        "unet": {
            "_class_name": "UNet2DConditionModel",
            "sample_size": 128,
            "addition_embed_type": "text_time",
            "addition_embed_type_num_heads": 64,
            "addition_time_embed_dim": 256,
            "attention_head_dim": [5, 10, 20],
            "block_out_channels": [320, 640, 1280],
            "cross_attention_dim": 2048,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "projection_class_embeddings_input_dim": 2816,
            "transformer_layers_per_block": [1, 2, 10],
            "use_linear_projection": True,
            "layers_per_block": 2,
        },
        "vae": {**_VAE, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "text_encoder": _CLIP_L,
        "text_encoder_2": _CLIP_G,
        "tokenizer": "clip",
        "tokenizer_2": "clip",
        "scheduler": {"_class_name": "EulerDiscreteScheduler", **_SD_SCHEDULE, "timestep_spacing": "leading"},
        "force_zeros_for_empty_prompt": True,
    },
    "flux-schnell": {
        "_class_name": "FluxPipeline",
        "defaults": {"steps": 4, "guidance_scale": 0.0, "width": 1024, "height": 1024},
        "transformer": {
            "_class_name": "FluxTransformer2DModel",
            "patch_size": 1,
            "in_channels": 64,
            "num_layers": 19,
            "num_single_layers": 38,
            "attention_head_dim": 128,
            "num_attention_heads": 24,
            "joint_attention_dim": 4096,
            "pooled_projection_dim": 768,
            "guidance_embeds": False,
            "axes_dims_rope": [16, 56, 56],
        },
        "vae": {
            **_VAE,
            "latent_channels": 16,
            "sample_size": 1024,
            "scaling_factor": 0.3611,
            "shift_factor": 0.1159,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        },
        "text_encoder": _CLIP_L,
        "text_encoder_2": _T5_XXL,
        "tokenizer": "clip",
        "tokenizer_2": "t5",
        "scheduler": {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 1.0, "use_dynamic_shifting": False},
    },
}
# Flux.1-dev: schnell's transformer with the guidance embedder (guidance-distilled, one pass a
# step), 28 steps at guidance 3.5, and its released scheduler (shifted by the image's length).
ARCHITECTURES["flux-dev"] = {
    **ARCHITECTURES["flux-schnell"],
    "defaults": {"steps": 28, "guidance_scale": 3.5, "width": 1024, "height": 1024},
    "transformer": {**ARCHITECTURES["flux-schnell"]["transformer"], "guidance_embeds": True},
    "scheduler": {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "shift": 3.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
    },
}

# CPU-test sizes: the same classes and block layouts, a few thousand weights.
_TINY_TEXT = {"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2}
_TINY_VAE = {
    "block_out_channels": [4, 8],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "norm_num_groups": 2,
    "layers_per_block": 1,
}
TINY: dict[str, dict[str, Any]] = {
    "sd15": {
        "defaults": {"steps": 2, "width": 64, "height": 64},
        "unet": {
            "sample_size": 32,
            "block_out_channels": [4, 8],
            "layers_per_block": 1,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "cross_attention_dim": 8,
            "attention_head_dim": 2,
            "norm_num_groups": 2,
        },
        "vae": _TINY_VAE,
        "text_encoder": {**_TINY_TEXT, "projection_dim": 8},
    },
    "flux-schnell": {
        "defaults": {"steps": 2, "width": 32, "height": 32, "max_sequence_length": 32},
        "transformer": {
            "in_channels": 4,
            "num_layers": 1,
            "num_single_layers": 1,
            "attention_head_dim": 8,
            "num_attention_heads": 2,
            "joint_attention_dim": 16,
            "pooled_projection_dim": 8,
            "axes_dims_rope": [2, 2, 4],
        },
        "vae": {**_TINY_VAE, "latent_channels": 1},
        "text_encoder": {**_TINY_TEXT, "projection_dim": 8},
        "text_encoder_2": {"d_model": 16, "d_ff": 32, "d_kv": 4, "num_heads": 2, "num_layers": 1},
    },
}
TINY["flux-dev"] = {**TINY["flux-schnell"], "defaults": {**TINY["flux-schnell"]["defaults"], "steps": 4}}

_LIBRARY = {"scheduler": "diffusers", "tokenizer": "transformers", "tokenizer_2": "transformers"}
_TOKENIZERS = {"clip": "CLIPTokenizer", "t5": "T5Tokenizer"}
_MODEL_NAMES = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2")


def names() -> list[str]:
    return sorted(ARCHITECTURES)


def spec(name: str, tiny: bool = False) -> dict[str, Any]:
    """The configs of architecture ``name`` (tiny: shrunk for CPU tests)."""
    if name not in ARCHITECTURES or (tiny and name not in TINY):
        known = sorted(TINY) if tiny else names()
        raise GenbatchError(
            f"no built-in architecture {name!r}{' (tiny)' if tiny else ''}; expected {', '.join(known)}"
        )
    found = json.loads(json.dumps(ARCHITECTURES[name]))
    for part, changes in (TINY[name] if tiny else {}).items():
        found[part] = {**found[part], **changes}
    return found


def write_architecture(name: str, folder: Path, *, tiny: bool = False) -> Path:
    """A config-only model folder of architecture ``name`` (no weights: built on load)."""
    from genbatch.pipelines.tiny_tokenizers import t5_tokenizer, write_clip_tokenizer

    found = spec(name, tiny)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"_class_name": found["_class_name"], "_diffusers_version": _diffusers_version()}
    for part, config in found.items():
        if part in _MODEL_NAMES or part == "scheduler":
            library = _LIBRARY.get(part) or ("transformers" if part.startswith("text_encoder") else "diffusers")
            index[part] = [library, config["_class_name"]]
            target = folder / part / ("scheduler_config.json" if part == "scheduler" else "config.json")
            target.parent.mkdir(exist_ok=True)
            target.write_text(json.dumps(config, indent=2), encoding="utf-8")
        elif part.startswith("tokenizer"):
            index[part] = ["transformers", _TOKENIZERS[config]]
            if config == "clip":
                write_clip_tokenizer(folder / part)
            else:
                t5_tokenizer(512).save_pretrained(folder / part)
    if "force_zeros_for_empty_prompt" in found:
        index["force_zeros_for_empty_prompt"] = found["force_zeros_for_empty_prompt"]
    own = {"name": f"{name}-random{'-tiny' if tiny else ''}", MARKER: name, **found["defaults"]}
    own["description"] = f"the {name} architecture with random weights, built on the device; its images are noise"
    (folder / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
    (folder / "genbatch.json").write_text(json.dumps(own, indent=2), encoding="utf-8")
    return folder


def _diffusers_version() -> str:
    import diffusers

    return str(diffusers.__version__)


def is_random_architecture(folder: Path) -> bool:
    from genbatch.pipelines.model_files import read_json

    return bool(read_json(Path(folder) / "genbatch.json").get(MARKER))


def build_pipeline(folder: Path, device: str, dtype: str, quantize: str | None = None) -> Any:
    """The pipeline of a folder written by :func:`write_architecture`: each component built
    from its config on ``device`` in ``dtype`` (``meta``: shapes only), seeded with 0;
    ``quantize="nf4"``: its denoiser's linear layers then made bitsandbytes NF4 layers."""
    import diffusers
    import torch

    from genbatch.pipelines.model_files import read_json
    from genbatch.pipelines.torch_runtime import torch_dtype

    folder = Path(folder)
    index = read_json(folder / "model_index.json")
    parts: dict[str, Any] = {}
    for part in sorted(k for k in index if k.startswith("tokenizer")):
        parts[part] = _tokenizer(folder / part, index[part][1])
    previous = torch.get_default_dtype()
    torch.manual_seed(0)
    try:
        torch.set_default_dtype(torch_dtype(dtype))
        with torch.device(device):
            for part in _MODEL_NAMES:
                if part in index:
                    config = read_json(folder / part / "config.json")
                    tokenizer = parts.get(part.replace("text_encoder", "tokenizer"))
                    parts[part] = _model(index[part][0], config, tokenizer)
    finally:
        torch.set_default_dtype(previous)
    scheduler = read_json(folder / "scheduler" / "scheduler_config.json")
    parts["scheduler"] = getattr(diffusers, scheduler["_class_name"]).from_config(scheduler)
    if quantize == "nf4":
        nf4_linear_layers(parts.get("transformer") or parts["unet"], torch_dtype(dtype))
    cls = getattr(diffusers, index["_class_name"])
    if index["_class_name"] == "StableDiffusionPipeline":
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return cls(**parts)


def _tokenizer(folder: Path, class_name: str) -> Any:
    import transformers

    return getattr(transformers, class_name).from_pretrained(folder)


def _model(library: str, config: dict[str, Any], tokenizer: Any) -> Any:
    config = {k: v for k, v in config.items() if not k.startswith("_")} | {"_class_name": config["_class_name"]}
    name = config.pop("_class_name")
    if library == "diffusers":
        import diffusers

        return getattr(diffusers, name).from_config(config)
    import transformers

    ids = {}
    if tokenizer is not None:
        ids = {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
        if name == "T5EncoderModel":
            ids = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    config_class = transformers.T5Config if name == "T5EncoderModel" else transformers.CLIPTextConfig
    return getattr(transformers, name)(config_class(**config, **ids))


def nf4_linear_layers(model: Any, compute_dtype: Any) -> None:
    """Replace each ``nn.Linear`` of ``model`` by a bitsandbytes ``Linear4bit`` holding its
    weights as 4-bit NF4 (blocks of 64, no double quantization, computing in ``compute_dtype``):
    the layers diffusers' ``BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")``
    makes as a folder loads. Each layer is quantized where its weights are (bitsandbytes
    quantizes on its way to a CUDA device), one at a time."""
    import importlib

    import torch

    bnb = importlib.import_module("bitsandbytes")  # an optional package (--quantize nf4): imported by name

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear:
                continue
            device = child.weight.device
            layer = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=False,
                quant_type="nf4",
                device="meta",
            )
            layer.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=False, quant_type="nf4", module=layer
            ).to(device)
            if child.bias is not None:
                layer.bias = torch.nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer)
            del child

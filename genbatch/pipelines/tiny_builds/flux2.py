"""Tiny Flux.2 pipelines, built offline (configs after diffusers' own fast tests).

Flux.2-klein (:func:`build_flux2_klein`): a Qwen3 text encoder over the byte-level Qwen
tokenizer (:mod:`genbatch.pipelines.tiny_builds.qwen_tokenizer`), a Flux2 transformer of one
double and one single block, a two-level AutoencoderKLFlux2.

Flux.2-dev (:func:`build_flux2`): the same transformer (embedding guidance) and VAE, a
Mistral3 encoder over a character-level Mistral tokenizer with Mistral's chat template.

Unscaled, a different prompt or guidance moves this build's pixels by a level: the
transformer's modulation weights (``double_stream_modulation_*``, ``single_stream_modulation``)
are scaled x10 and its attention's query/key RMSNorm weights x3 (attention logits 9x
sharper), after which a prompt moves pixels by ~30 levels and guidance 4 vs 1 by ~15.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_builds.qwen_image import _scaled
from genbatch.pipelines.tiny_builds.qwen_tokenizer import qwen_tokenizer
from genbatch.pipelines.tiny_builds.z_image import qwen3_config
from genbatch.pipelines.tiny_models import _seeded, save_tiny

# Flux2KleinPipeline stacks the hidden states of these encoder layers (its default
# text_encoder_out_layers, what the released klein models run at: Qwen3-4B and -8B have 36
# layers). The tiny encoder has 27 layers, so the default indexes real layers and genbatch,
# like plain diffusers, passes nothing.
KLEIN_OUT_LAYERS = (9, 18, 27)
QWEN3_HIDDEN = 16


def _flux2_vae() -> Any:
    """A two-level AutoencoderKLFlux2 (images twice its latents' size) of one latent channel."""
    from diffusers import AutoencoderKLFlux2

    return _seeded(
        lambda: AutoencoderKLFlux2(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
            up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
            block_out_channels=(4, 8),
            layers_per_block=1,
            latent_channels=1,
            norm_num_groups=1,
            use_quant_conv=False,
            use_post_quant_conv=False,
        )
    )


def _flux2_transformer(text_width: int, *, guidance_embeds: bool) -> Any:
    """A Flux2 transformer over latents of one channel packed 2x2 (tokens of 4), its text
    made to move its images (see the module's docstring)."""
    from diffusers import Flux2Transformer2DModel

    model = _seeded(
        lambda: Flux2Transformer2DModel(
            patch_size=1,
            in_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=text_width,
            timestep_guidance_channels=256,
            axes_dims_rope=[4, 4, 4, 4],
            guidance_embeds=guidance_embeds,
        )
    )
    _scaled(model, ("modulation",), 10.0)
    return _scaled(model, ("norm_q", "norm_k", "norm_added_q", "norm_added_k"), 3.0)


def build_flux2_klein(folder: Path, *, distilled: bool = False) -> None:
    """Flux.2-klein (Flux2KleinPipeline): the base model by default (classifier-free guidance
    against an empty prompt above guidance 1); ``distilled=True`` is a step-distilled klein,
    which ignores guidance (``is_distilled`` in model_index.json)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
    from transformers import Qwen3ForCausalLM

    tokenizer = qwen_tokenizer(folder / "tokenizer")
    encoder = _seeded(lambda: Qwen3ForCausalLM(qwen3_config(tokenizer, layers=max(KLEIN_OUT_LAYERS))))
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=_flux2_vae(),
        text_encoder=encoder,
        tokenizer=tokenizer,
        transformer=_flux2_transformer(len(KLEIN_OUT_LAYERS) * QWEN3_HIDDEN, guidance_embeds=False),
        is_distilled=distilled,
    )
    name = "flux2-klein-distilled" if distilled else "flux2-klein"
    defaults: dict[str, Any] = {"guidance_scale": 1.0} if distilled else {"guidance_scale": 4.0}
    save_tiny(pipe, folder, name, width=32, height=32, max_sequence_length=64, **defaults)


# Flux2Pipeline (dev) stacks the hidden states of these layers of its Mistral3 encoder (its
# default text_encoder_out_layers; Mistral Small 3.1 has 40 layers). The tiny encoder has 30,
# so the default indexes real layers and genbatch, like plain diffusers, passes nothing.
DEV_OUT_LAYERS = (10, 20, 30)
MISTRAL_HIDDEN = 8

# Mistral's chat format, as Flux2Pipeline's prompts go through it: its system message, then the prompt.
_MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['content'] is string %}{% set text = message['content'] %}"
    "{% else %}{% set text = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') %}{% endif %}"
    "{% if message['role'] == 'system' %}[SYSTEM_PROMPT]{{ text }}[/SYSTEM_PROMPT]"
    "{% elif message['role'] == 'user' %}[INST]{{ text }}[/INST]"
    "{% else %}{{ text }}{{ eos_token }}{% endif %}{% endfor %}"
)
_MISTRAL_SPECIALS = ("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[IMG]", "[IMG_BREAK]", "[IMG_END]")


def _mistral_tokenizer() -> Any:
    """A Mistral (Llama-style) tokenizer over single characters with Mistral's special tokens
    and chat template: any prompt tokenizes, one token a character (Flux2Pipeline's system
    message takes 172 of them).

    The released FLUX.2-dev's ``tokenizer`` is a PixtralProcessor, which transformers builds
    only with torchvision; Flux2Pipeline calls nothing of it for a text-only prompt but
    ``apply_chat_template`` (with padding, truncation and ``max_length``), which a tokenizer
    has with the same arguments and result. So the tiny build's ``tokenizer`` is the tokenizer."""
    import string

    from transformers import LlamaTokenizer

    chars = [c for c in string.printable if c not in string.whitespace]
    tokens = ["<unk>", "<s>", "</s>", "<pad>", *_MISTRAL_SPECIALS, "\u2581", *chars]
    tokenizer = LlamaTokenizer(
        vocab={token: i for i, token in enumerate(tokens)}, merges=[], pad_token="<pad>", add_prefix_space=False
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(_MISTRAL_SPECIALS)})
    tokenizer.chat_template = _MISTRAL_TEMPLATE
    tokenizer.model_max_length = 512
    return tokenizer


def _mistral3_encoder(tokenizer: Any) -> Any:
    """A Mistral3ForConditionalGeneration (as diffusers' Flux.2 fast test builds it) whose
    language model has ``max(DEV_OUT_LAYERS)`` layers of width MISTRAL_HIDDEN; its Pixtral
    vision tower (one layer) is never called for a text-only prompt."""
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration

    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": MISTRAL_HIDDEN,
            "intermediate_size": 16,
            "max_position_embeddings": 512,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 4,
            "num_hidden_layers": max(DEV_OUT_LAYERS),
            "rms_norm_eps": 1e-05,
            "rope_theta": 1000000000.0,
            "sliding_window": None,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 8,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "intermediate_size": 16,
            "image_size": 30,
            "patch_size": 6,
            "num_channels": 3,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        spatial_merge_size=1,
        vision_feature_layer=-1,
    )
    return _seeded(lambda: Mistral3ForConditionalGeneration(config).eval())


def build_flux2(folder: Path) -> None:
    """Flux.2-dev (Flux2Pipeline): guidance-distilled (the transformer embeds guidance), a
    Mistral3 encoder (:func:`_mistral3_encoder`) over :func:`_mistral_tokenizer`, klein's
    transformer and VAE. Prompts need max_sequence_length 256 (the system message comes first).

    Besides klein's scaling (module docstring), the value projection of the text tokens
    (``add_v_proj``) is scaled x10: with klein's alone a prompt moves this build's pixels by
    8-10 levels, with it by 40-65; guidance 4 vs 6 by ~100."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2Pipeline

    tokenizer = _mistral_tokenizer()
    transformer = _flux2_transformer(len(DEV_OUT_LAYERS) * MISTRAL_HIDDEN, guidance_embeds=True)
    pipe = Flux2Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_flux2_vae(),
        text_encoder=_mistral3_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=_scaled(transformer, ("add_v_proj",), 10.0),
    )
    save_tiny(pipe, folder, "flux2", width=32, height=32, guidance_scale=4.0, max_sequence_length=256)

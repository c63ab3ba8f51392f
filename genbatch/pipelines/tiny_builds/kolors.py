"""A tiny Kolors (KolorsPipeline): a ChatGLM3 text encoder and an SDXL-like UNet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.builtin import tiny_unet
from genbatch.pipelines.tiny_models import _seeded, _vae, save_tiny
from genbatch.pipelines.tiny_tokenizers import _CHARS, _SPACE

HIDDEN = 16  # ChatGLM's width: its states go into the UNet, its last token is the pooled embedding


def write_chatglm_vocabulary(path: Path) -> None:
    """A SentencePiece model of single characters (``tokenizer.model``), written offline as a
    protocol buffer: <unk>, <s>, </s>, the word-start mark, then every printable ASCII
    character. ChatGLMTokenizer adds its own special tokens ([gMASK], sop...) after these."""
    from sentencepiece import sentencepiece_model_pb2

    pb: Any = sentencepiece_model_pb2  # generated protocol buffer classes (no type stubs)
    model = pb.ModelProto()
    piece = pb.ModelProto.SentencePiece
    for text, kind in (("<unk>", piece.UNKNOWN), ("<s>", piece.CONTROL), ("</s>", piece.CONTROL)):
        model.pieces.add(piece=text, score=0.0, type=kind)
    model.pieces.add(piece=_SPACE, score=-1.0)
    for char in _CHARS:
        model.pieces.add(piece=char, score=-2.0)
    model.trainer_spec.model_type = pb.TrainerSpec.CHAR
    model.trainer_spec.unk_id, model.trainer_spec.bos_id, model.trainer_spec.eos_id = 0, 1, 2
    model.trainer_spec.pad_id = -1
    model.normalizer_spec.name = "identity"
    model.normalizer_spec.add_dummy_prefix = True
    model.normalizer_spec.remove_extra_whitespaces = True
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def chatglm_tokenizer(folder: Path) -> Any:
    """A ChatGLMTokenizer over :func:`write_chatglm_vocabulary`'s characters, in ``folder``."""
    from diffusers.pipelines.kolors import ChatGLMTokenizer

    write_chatglm_vocabulary(folder / "tokenizer.model")
    return ChatGLMTokenizer(str(folder / "tokenizer.model"))


def _chatglm(tokenizer: Any) -> Any:
    """A two-layer ChatGLM3 (rotary, RMSNorm, multi-query attention with QKV bias) of width 16.
    Built with ``empty_init=False`` (ChatGLMModel's default leaves its weights uninitialised),
    and its RMSNorm weights, which no initialiser touches, set to one."""
    import torch
    from diffusers.pipelines.kolors import ChatGLMModel
    from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig

    config = ChatGLMConfig(
        num_layers=2,
        padded_vocab_size=len(tokenizer.get_vocab()) + 16,
        hidden_size=HIDDEN,
        ffn_hidden_size=32,
        kv_channels=8,
        num_attention_heads=2,
        seq_length=256,
        multi_query_attention=True,
        multi_query_group_num=1,
        add_qkv_bias=True,
        original_rope=True,
        use_cache=False,
    )
    model = _seeded(lambda: ChatGLMModel(config, empty_init=False)).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("layernorm.weight"):
                parameter.fill_(1.0)
    return model


def build_kolors(folder: Path) -> None:
    """Kolors as diffusers' fast tests build it, smaller: a ChatGLM3 of width 16 over a
    character vocabulary (one token a character: prompts need max_sequence_length 64), the
    tiny SDXL's UNet taking ChatGLM's states through a text projection (``encoder_hid_proj``,
    as Kolors' UNet does) and its last token as the pooled embedding, a two-level VAE.

    The text projection ``encoder_hid_proj`` is scaled x10: without it a guidance of 2
    instead of 5 moves the image by 7 levels only (x10: some 90); prompt and negative prompt
    move it by more than 100."""
    import torch
    from diffusers import EulerDiscreteScheduler, KolorsPipeline

    tokenizer = chatglm_tokenizer(folder / "tokenizer")
    # Time ids (6 values, 8 dims each) plus ChatGLM's pooled state (16).
    unet = tiny_unet(
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + HIDDEN,
        cross_attention_dim=8,
        encoder_hid_dim=HIDDEN,
        encoder_hid_dim_type="text_proj",
    )
    with torch.no_grad():
        for parameter in unet.encoder_hid_proj.parameters():
            parameter.mul_(10.0)
    pipe = KolorsPipeline(
        vae=_vae(),
        text_encoder=_chatglm(tokenizer),
        tokenizer=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            num_train_timesteps=1100,
            beta_start=0.00085,
            beta_end=0.014,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        ),
        force_zeros_for_empty_prompt=False,
    )
    save_tiny(pipe, folder, "kolors", width=64, height=64, guidance_scale=5.0, max_sequence_length=64)

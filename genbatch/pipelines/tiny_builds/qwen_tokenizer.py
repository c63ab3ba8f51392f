"""A Qwen2-style tokenizer written offline, for the tiny pipelines whose text encoder is a Qwen
model (Qwen-Image's Qwen2.5-VL, Z-Image's and Flux.2-klein's Qwen3, HunyuanImage...).

Byte-level BPE with no merges: every byte of a prompt is one token (the 256 byte-level
characters GPT-2 and Qwen use), so any prompt tokenizes; the special tokens the pipelines'
prompt templates use (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``, the vision markers)
are single tokens after them, as in Qwen's own vocabulary. Its chat template is Qwen3's
(``enable_thinking=False`` adds the empty ``<think>`` block), text only or with typed content
(``{"type": "text"}``, ``{"type": "image"}``) as Qwen-VL processors pass it.

    from genbatch.pipelines.tiny_builds.qwen_tokenizer import qwen_tokenizer
    tokenizer = qwen_tokenizer(None)            # in memory
    tokenizer = qwen_tokenizer(folder / "tokenizer")   # written there, loaded back
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_tokenizers import _byte_level_alphabet

# Qwen's special tokens, in the order of Qwen's vocabulary (ids follow the 256 bytes here).
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added tokens that are not special in Qwen3 (decoded like text): the thinking markers.
THINK_TOKENS = ("<think>", "</think>")

# Qwen3's chat template, reduced to what a prompt encoder asks of it: system / user / assistant
# turns with string or typed content, and the generation prompt with Qwen3's enable_thinking.
QWEN3_CHAT_TEMPLATE = (
    "{%- macro content(message) -%}"
    "{%- if message.content is string -%}{{- message.content -}}"
    "{%- else -%}{%- for part in message.content -%}"
    "{%- if part.type == 'image' or 'image' in part -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part.type == 'video' or 'video' in part -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in part -%}{{- part.text -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' -}}{{- content(message) -}}{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)


def qwen_vocab() -> dict[str, int]:
    """The 256 byte-level characters, then Qwen's special and thinking tokens."""
    tokens = [*_byte_level_alphabet(), *SPECIAL_TOKENS, *THINK_TOKENS]
    return {token: i for i, token in enumerate(tokens)}


def qwen_tokenizer(
    folder: Path | None = None, *, max_length: int = 32768, chat_template: str = QWEN3_CHAT_TEMPLATE
) -> Any:
    """A ``Qwen2Tokenizer`` (what Qwen2, Qwen2.5-VL and Qwen3 models use; ``Qwen2TokenizerFast``
    is the same class in transformers 5) over single bytes, with Qwen's special tokens and
    Qwen3's chat template (or ``chat_template``: Qwen2.5's adds a default system turn, for a
    pipeline that relies on it). With ``folder``: saved there and loaded back from it."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    tokenizer = Qwen2Tokenizer(
        vocab=qwen_vocab(),
        merges=[],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        errors="replace",
        clean_up_tokenization_spaces=False,
        model_max_length=max_length,
        chat_template=chat_template,
    )
    tokenizer.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]}
    )
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in THINK_TOKENS])
    if folder is None:
        return tokenizer
    folder = Path(folder)
    tokenizer.save_pretrained(folder)
    return Qwen2Tokenizer.from_pretrained(folder)

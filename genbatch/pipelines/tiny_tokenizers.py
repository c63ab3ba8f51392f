"""Tokenizers written offline, for the tiny built models (nothing may be downloaded): CLIP's
byte-level BPE with no merges, a character-level Unigram vocabulary for T5 and a
character-level BPE for Gemma. Any prompt tokenizes with each."""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

# Every printable ASCII character but the space, which the tokenizers mark with "▁".
_CHARS = [c for c in string.printable if c not in string.whitespace]
_SPACE = "\u2581"


def _byte_level_alphabet() -> list[str]:
    """The 256 printable characters byte-level BPE (GPT-2, CLIP) uses for the 256 bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in printable else chr(next(extra)) for b in range(256)]


def write_clip_tokenizer(folder: Path, *, max_length: int = 77) -> None:
    """A byte-level CLIP BPE tokenizer with no merges, written offline.

    Every byte is a token, so any prompt tokenizes; without ``tokenizer_config.json``'s
    ``model_max_length`` prompts would pad to ~1e30 tokens.
    """
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_level_alphabet()
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"model_max_length": max_length, "tokenizer_class": "CLIPTokenizer"}), encoding="utf-8"
    )
    (folder / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            }
        ),
        encoding="utf-8",
    )


def clip_tokenizer(folder: Path) -> Any:
    """:func:`write_clip_tokenizer` into ``folder``, loaded back as a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder)


def t5_tokenizer(max_length: int = 512) -> Any:
    """A T5 tokenizer over single characters (a Unigram vocabulary: <pad>, </s>, <unk>, then
    each character with and without the word-start mark), so any ASCII prompt tokenizes."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (_SPACE, -2.0)]
    pieces += [(_SPACE + c, -3.0) for c in _CHARS] + [(c, -3.0) for c in _CHARS]
    tokenizer = T5Tokenizer(vocab=pieces, extra_ids=0)
    tokenizer.model_max_length = max_length
    return tokenizer


def gemma_tokenizer() -> Any:
    """A Gemma tokenizer over single characters (BPE with no merges)."""
    from transformers import GemmaTokenizer

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
    vocab = {token: i for i, token in enumerate(specials + [_SPACE] + _CHARS)}
    tokenizer = GemmaTokenizer(vocab=vocab, merges=[])
    tokenizer.model_max_length = 512
    return tokenizer

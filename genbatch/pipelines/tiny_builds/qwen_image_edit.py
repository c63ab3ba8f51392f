"""A tiny Qwen-Image-Edit (QwenImageEditPipeline), built offline.

The tiny Qwen-Image's text side (:mod:`genbatch.pipelines.tiny_builds.qwen_image`: a two-layer
Qwen2.5-VL text encoder with its two-layer vision tower, the byte-level Qwen tokenizer, a
QwenImage transformer whose modulation and query/key norms are scaled so that text reaches
the image) and Qwen-Image-Edit's ``processor``: a Qwen2VLProcessor, which puts the input
image's vision tokens among the prompt's for the text encoder. The input image reaches the
output twice: as those vision tokens, and as VAE latents packed beside the noise's in the
transformer's sequence.

Qwen-Image-Edit resizes every input image to about 1024x1024 for its VAE, whatever size is
asked, so each call encodes a 1024x1024 image. This build's VAE has factor 16 (four
downsamplings, two of them temporal, where Qwen-Image's has three: factor 8) and a thin
full-size level (4 channels), so that a call takes about a second on a CPU: 1024 image tokens
beside the noise's instead of 4096. Sizes are then multiples of 32 (16 x the 2x2 patches).

Unchanged, a different input image moves this build's pixels by a level or two: the noise's
few tokens attend over a thousand image tokens and some 300 of the system template, and
average them. So the query/key norms are scaled again (:data:`EDIT_SHARPEN`) and the VAE's
encoder gives latents of about unit variance (:data:`ENCODER_GAIN`,
:func:`genbatch.pipelines.tiny_models.fit_encoder`): a different input image then moves
pixels by ~30-50 levels, a different prompt by ~70.

The processor is written as the released model's ``processor/`` folder is
(``preprocessor_config.json``, ``video_preprocessor_config.json``, the tokenizer), with the
vision tower's input capped at 112x112 pixels (:data:`VISION_PIXELS`: 16 vision tokens)
where Qwen's takes up to 12.8 M pixels.

Qwen2VLProcessor cannot be made or loaded without torchvision in transformers 5: its
``video_processor`` slot (even empty) is checked against ``VideoProcessorMixin``, which
transformers exports only with torchvision (the check then fails on a placeholder mapping),
and loading builds a Qwen2VLVideoProcessor, which needs torchvision. So this build writes the
processor's files without making one; ``DiffusionPipeline.from_pretrained`` loads the folder
where torchvision is installed, and elsewhere fails as it does for the released model
("Qwen2VLVideoProcessor requires the Torchvision library"). :func:`processor_without_video`
assembles the same processor from those files (its image processor and tokenizer, no video
processor) for ``DiffusionPipeline.from_pretrained(folder, processor=...)`` without torchvision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from genbatch.pipelines.tiny_builds.qwen_image import (
    _qwen2_5_vl_encoder,
    _scaled,
    _sharpened,
    qwen_scheduler,
    qwen_transformer,
    qwen_vae,
)
from genbatch.pipelines.tiny_builds.qwen_tokenizer import qwen_tokenizer
from genbatch.pipelines.tiny_models import fit_encoder, save_tiny

VAE_BASE_DIM = 4  # the VAE's channels at full size
VAE_DIM_MULT = (1, 2, 4, 4, 4)
VAE_DOWNSAMPLINGS = (False, False, True, True)  # temporal, per level; 2 ** len spatially
ENCODER_GAIN = 3.0  # the VAE encoder's means (see fit_encoder): about unit variance
EDIT_SHARPEN = 1.7  # the query/key norms again, over the tiny Qwen-Image's x3: attention logits x26
VISION_PIXELS = (56 * 56, 112 * 112)  # the vision tower's input, min and max pixels
_PATCHING = {"patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}  # the vision tower's (default) patching
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def _processor_files(folder: Path, tokenizer: Any) -> None:
    """Write a Qwen2VLProcessor's folder (as the released Qwen-Image-Edit's ``processor/``) without making one."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    smallest, largest = VISION_PIXELS
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": _CLIP_MEAN,
        "image_std": _CLIP_STD,
        "rescale_factor": 1 / 255,
        "resample": 3,
        "size": {"shortest_edge": smallest, "longest_edge": largest},
        "min_pixels": smallest,
        "max_pixels": largest,
        **_PATCHING,
        "processor_class": "Qwen2VLProcessor",
    }
    images = {"image_processor_type": "Qwen2VLImageProcessor", **common}
    videos = {"video_processor_type": "Qwen2VLVideoProcessor", **common}
    for name, config in (("preprocessor_config.json", images), ("video_preprocessor_config.json", videos)):
        (folder / name).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def processor_without_video(folder: Path) -> Any:
    """The Qwen2VLProcessor of a Qwen-Image-Edit folder's ``processor/`` (or of that folder
    itself) with no video processor, made without torchvision: its image processor (Pillow's)
    and tokenizer from the folder's files, as ``Qwen2VLProcessor.from_pretrained`` reads them.
    Qwen-Image-Edit calls it with text and images only."""
    from transformers import Qwen2Tokenizer, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    if (folder / "processor").is_dir():
        folder = folder / "processor"
    config = json.loads((folder / "preprocessor_config.json").read_text(encoding="utf-8"))
    keys = ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std", *_PATCHING)
    image_processor = Qwen2VLImageProcessorPil(size=config["size"], **{k: config[k] for k in keys})
    tokenizer = Qwen2Tokenizer.from_pretrained(folder)
    processor = Qwen2VLProcessor.__new__(Qwen2VLProcessor)
    # what Qwen2VLProcessor.__init__ sets, less the class checks that need torchvision
    processor.chat_template = getattr(tokenizer, "chat_template", None)
    processor.image_processor, processor.tokenizer, processor.video_processor = image_processor, tokenizer, None
    processor.image_token, processor.video_token = "<|image_pad|>", "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    return processor


def build_qwen_image_edit(folder: Path) -> None:
    """Qwen-Image-Edit (QwenImageEditPipeline): true CFG with a negative prompt, as Qwen-Image."""
    from diffusers import QwenImageEditPipeline

    tokenizer = qwen_tokenizer(folder / "tokenizer")
    transformer = qwen_transformer()
    _scaled(_sharpened(transformer), ("norm_q", "norm_k", "norm_added_q", "norm_added_k"), EDIT_SHARPEN)
    vae = qwen_vae(VAE_BASE_DIM, VAE_DIM_MULT, VAE_DOWNSAMPLINGS)
    pipe = QwenImageEditPipeline(
        scheduler=qwen_scheduler(),
        vae=fit_encoder(vae, ENCODER_GAIN),
        text_encoder=_qwen2_5_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        processor=None,
        transformer=transformer,
    )
    save_tiny(pipe, folder, "qwen-image-edit", width=64, height=64)
    _processor_files(folder / "processor", tokenizer)
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text(encoding="utf-8"))
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")

"""IP-Adapters on the torch backend: the run's adapter loaded into the model's UNet (one at a
time: a batch of another adapter unloads it first), and each image's own IP-Adapter image.

diffusers' pipelines take one IP-Adapter image (or embedding) for a whole call: a list of a
batch's images is read as several images of one adapter, and an embedding is repeated for each
prompt of the batch; either way each image of the batch sees every row's image. So each job's
image is encoded alone, by the pipeline's own ``prepare_ip_adapter_image_embeds`` (what a call
with ``ip_adapter_image=`` does), the batch's embeddings are stacked one row per image, and for
the call the pipeline's ``prepare_ip_adapter_image_embeds`` returns that stack as it is
(:func:`ip_adapter_call`): each image is the one plain diffusers makes of its own IP-Adapter image
alone. diffusers has no argument for a per-image embedding, hence the method swapped for the call.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

from genbatch.errors import ModelError
from genbatch.manifest.inputs import opened
from genbatch.pipelines.image_inputs import ip_adapter_encoder, ip_adapter_file


class IpAdapters:
    """The adapter loaded into a model's pipelines (``pipes()``: the model's own and the variants
    made from it, which share its UNet)."""

    def __init__(self, device: str, dtype: Any):
        self.device, self.dtype = device, dtype
        self.loaded: str | None = None

    def use(self, pipes: Sequence[Any], given: str | None, scale: float | None) -> None:
        """Load ``given`` (an ip_adapter value; None: none) into the shared UNet unless it is
        loaded, and set its scale (1 where none is given)."""
        main = pipes[0]
        if given != self.loaded:
            if self.loaded is not None:
                main.unload_ip_adapter()
                self.loaded = None
            if given is not None:
                self._load(pipes, given)
                self.loaded = given
        if given is not None:
            main.set_ip_adapter_scale(1.0 if scale is None else scale)

    def _load(self, pipes: Sequence[Any], given: str) -> None:
        from transformers import CLIPVisionModelWithProjection

        weights = ip_adapter_file(given)
        encoder = ip_adapter_encoder(weights) if weights else None
        if weights is None or encoder is None:  # checked at plan time; gone since
            raise ModelError(f"ip_adapter {given}: its weight file or image encoder is no longer there")
        try:
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(encoder, torch_dtype=self.dtype)
            image_encoder.to(self.device)
            for pipe in pipes:  # load_ip_adapter then loads no encoder of its own
                pipe.register_modules(image_encoder=image_encoder)
            pipes[0].load_ip_adapter(str(weights.parent), subfolder="", weight_name=weights.name)
        except Exception as err:
            raise ModelError(f"cannot load the IP-Adapter {given}: {err}") from err
        for pipe in pipes[1:]:  # the feature extractor load_ip_adapter made, where the model had none
            if getattr(pipe, "feature_extractor", None) is None:
                pipe.register_modules(feature_extractor=pipes[0].feature_extractor)


@contextlib.contextmanager
def ip_adapter_call(pipe: Any, jobs: Sequence[Any], call: dict[str, Any], adapter: str | None) -> Iterator[dict]:
    """The call's IP-Adapter argument for a batch (none without ``adapter``): each job's
    embedding of its own image (:func:`ip_adapter_embeds`), which ``pipe``'s
    ``prepare_ip_adapter_image_embeds`` gives as it is during the call, instead of repeating an
    embedding for each prompt of the batch."""
    if adapter is None:
        yield {}
        return
    stacked = ip_adapter_embeds(pipe, jobs, call)
    pipe.prepare_ip_adapter_image_embeds = lambda *args, **kwargs: stacked
    try:
        yield {"ip_adapter_image_embeds": stacked}
    finally:
        del pipe.prepare_ip_adapter_image_embeds  # the class's own again


def ip_adapter_embeds(pipe: Any, jobs: Sequence[Any], call: dict[str, Any]) -> list[Any]:
    """``ip_adapter_image_embeds`` for a batch: per adapter, each job's embedding of its own image
    (each distinct image encoded once), stacked in the jobs' order (the unconditional ones first
    where the call guides, as the pipeline splits them)."""
    import torch

    guidance = call.get("guidance_scale", inspect.signature(pipe.__call__).parameters["guidance_scale"].default)
    guided = guidance > 1 and getattr(pipe.unet.config, "time_cond_proj_dim", None) is None
    device = pipe._execution_device
    encoded: dict[str, list[Any]] = {}
    for job in jobs:
        given = job.values["ip_adapter_image"]
        if given.sha256 not in encoded:
            image = opened(given, None, None, None, "RGB")
            encoded[given.sha256] = pipe.prepare_ip_adapter_image_embeds(image, None, device, 1, guided)
    per_job = [encoded[job.values["ip_adapter_image"].sha256] for job in jobs]
    stacked = []
    for adapter in range(len(per_job[0])):
        embeds = [found[adapter] for found in per_job]
        if guided:  # each is (unconditional, conditional)
            halves = [e.chunk(2) for e in embeds]
            stacked.append(torch.cat([h[0] for h in halves] + [h[1] for h in halves]))
        else:
            stacked.append(torch.cat(embeds))
    return stacked

"""Initial latents, drawn per image on the CPU from the image's own seed.

Drawing each image's noise from its own ``torch.Generator("cpu")`` makes an image depend
only on its seed: the same whether it ran alone or in a batch of any size, on any device,
on any backend. (Drawing a whole batch from one generator, or on the GPU, would not.)
"""

from __future__ import annotations

import torch


def initial_latents(seeds: list[int], channels: int, height: int, width: int) -> torch.Tensor:
    """float32 CPU tensor of shape (len(seeds), channels, height, width)."""
    return torch.cat(
        [
            torch.randn(
                (1, channels, height, width), generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32
            )
            for seed in seeds
        ]
    )

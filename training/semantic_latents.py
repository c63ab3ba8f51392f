"""Latents that say what a scene holds, written from its spec, for the VAE's decoder to draw.

A learned autoencoder keeps a shape as a subtle pattern of a few latent values at an
object's edge, while its colour moves many values a long way: the UNet learns colour
from the caption early and shape hardly at all (training/README.md, "What limited
shape with a learned autoencoder"). Here every latent pixel (a 4×4 patch of the image) says outright:

    channels 0-2    the scene's background colour (RGB in [-1, 1]), everywhere
    channel  3      how much of the patch the object's box covers (0..1 -> [-1, 1])
    channels 4-6    the object's colour, on patches its box touches (0 elsewhere)
    channels 7-11   the object's shape, one-hot, on the same patches

so the shape word has as loud a target as the colour word. The decoder of an ordinary
AutoencoderKL learns to draw scenes from these latents, and its encoder to read them
back; the pipeline, export and runner see a plain diffusers VAE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

try:  # imported as training.semantic_latents, or beside the scripts in training/
    from . import shapes_data as sd
except ImportError:
    import shapes_data as sd

CHANNELS = 12
BACKGROUND, COVERAGE, COLOR, SHAPE = slice(0, 3), 3, slice(4, 7), slice(7, 12)


def _rgb(name: str) -> np.ndarray:
    return np.asarray(sd.PALETTE[name], dtype=np.float32) / 127.5 - 1.0


def _inside(box: list[int]) -> np.ndarray:
    """(64, 64) float32: 1 inside the box [x, y, side]."""
    x, y, s = box
    m = np.zeros((sd.IMAGE_SIZE, sd.IMAGE_SIZE), dtype=np.float32)
    m[y:y + s, x:x + s] = 1.0
    return m


def _coverage(box: list[int], factor: int) -> np.ndarray:
    """How much of each latent pixel's patch the object's *box* covers: the same for
    every shape, so where and how big is said apart from what."""
    g = sd.IMAGE_SIZE // factor
    return _inside(box).reshape(g, factor, g, factor).mean(axis=(1, 3))


def of_spec(spec: dict, factor: int = 4) -> np.ndarray:
    """(CHANNELS, 64/factor, 64/factor) float32. Where objects share a patch (they keep
    3 px apart, so only at their edges) the one covering more of it owns it."""
    g = sd.IMAGE_SIZE // factor
    z = np.zeros((CHANNELS, g, g), dtype=np.float32)
    z[BACKGROUND] = _rgb(spec["background"])[:, None, None]
    best = np.zeros((g, g), dtype=np.float32)
    for o in spec["objects"]:
        cov = _coverage(o["box"], factor)
        own = cov > best
        best = np.where(own, cov, best)
        z[COLOR][:, own] = _rgb(o["color"])[:, None]
        z[SHAPE][:, own] = 0.0
        z[SHAPE.start + sd.SHAPES.index(o["shape"])][own] = 1.0
    z[COVERAGE] = 2 * best - 1
    return z


def box_mask(spec: dict) -> np.ndarray:
    """(64, 64) float32: 1 inside any object's box, where the decoder draws a shape."""
    return np.maximum.reduce([_inside(o["box"]) for o in spec["objects"]])


def of_specs(specs: list[dict], factor: int = 4) -> torch.Tensor:
    return torch.from_numpy(np.stack([of_spec(s, factor) for s in specs]))


def roughen(z: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """What the decoder trains on: the object channels blurred by a random amount and
    noise added, as a UNet's latents will be, so that it learns to draw a clean shape
    from a rough blob and the word's one-hot rather than trace the blob."""
    n = len(z)
    sigma = torch.rand(n, generator=g) * 0.8  # in latent pixels
    k = torch.arange(-2, 3, dtype=torch.float32)
    kernel = torch.exp(-k[None] ** 2 / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 5)
    obj = z[:, BACKGROUND.stop:]
    c = obj.shape[1]
    # separable blur, one kernel per image (grouped convolution over n*c channels)
    flat = obj.reshape(1, n * c, *obj.shape[2:])
    kx = kernel.repeat_interleave(c, 0)[:, None, None, :]
    ky = kernel.repeat_interleave(c, 0)[:, None, :, None]
    flat = F.conv2d(F.pad(flat, (2, 2, 0, 0), mode="replicate"), kx, groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, 2, 2), mode="replicate"), ky, groups=n * c)
    out = torch.cat([z[:, BACKGROUND], flat.reshape(obj.shape)], 1)
    noise = torch.randn(out.shape, generator=g) * (torch.rand(n, 1, 1, 1, generator=g) * 0.1)
    return out + noise


@torch.no_grad()
def make_encoder_certain(vae, logvar: float = -10.0) -> None:
    """The encoder is trained to read the latents' means only, which leaves the log-variance
    half of its output untrained (noise of about unit std in `latent_dist.sample()`). Fix it
    at a constant: a read latent is what the scene holds, with no spread to sample."""
    conv = vae.quant_conv
    half = conv.out_channels // 2
    conv.weight[half:] = 0.0
    conv.bias[half:] = logvar

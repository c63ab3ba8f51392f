"""Latents that say what a scene holds, written from its spec, for the VAE's decoder to draw.

A learned autoencoder keeps a shape as a subtle pattern of a few latent values at an
object's edge, while its colour moves many values a long way: the UNet learns colour
from the caption early and shape hardly at all (training/DESIGN.md, "Semantic
latents", and its table of experiments). Here every latent pixel (a 4×4 patch of the image)
says outright what the scene holds, in three object *slots*, one object each:

    channels 0-2     the scene's background colour (RGB in [-1, 1]), everywhere
    slot 0, 3-11     how much of the patch the object's box covers (0..1 -> [-1, 1]),
                     then the object's colour (RGB) and shape (one-hot), everywhere
    slot 1, 12-20    the same for a second object
    slot 2, 21-29    and a third

A single object fills slot 0; the objects of a relation or a count fill slots 0, 1
(and 2) in the order the image shows them (`slots`). A colour or shape is
then a value of the whole latent, as the background is, which the UNet reads from the
caption as surely as the background, rather than a value of the pixels where an
object lands; and so is how many objects there are (how many slots are filled), while
where each goes is said by its slot's coverage alone (training/DESIGN.md, "Object
slots"). The decoder of an ordinary AutoencoderKL learns to draw scenes from these
latents, and its encoder to read them back; the pipeline, export and runner see a
plain diffusers VAE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

try:  # imported as training.semantic_latents, or beside the scripts in training/
    from . import shapes_data as sd
except ImportError:
    import shapes_data as sd

SLOTS, _SLOT = 3, 1 + 3 + len(sd.SHAPES)  # coverage, colour, shape
CHANNELS = 3 + SLOTS * _SLOT
BACKGROUND = slice(0, 3)
COVERAGE = tuple(3 + k * _SLOT for k in range(SLOTS))
COLOR = tuple(slice(4 + k * _SLOT, 7 + k * _SLOT) for k in range(SLOTS))
SHAPE = tuple(slice(7 + k * _SLOT, 7 + len(sd.SHAPES) + k * _SLOT) for k in range(SLOTS))


def _rgb(name: str) -> np.ndarray:
    return np.asarray(sd.PALETTE[name], dtype=np.float32) / 127.5 - 1.0


def _inside(box: list[int]) -> np.ndarray:
    """(64, 64) float32: 1 inside the box [x, y, side]."""
    x, y, s = box
    m = np.zeros((sd.IMAGE_SIZE, sd.IMAGE_SIZE), dtype=np.float32)
    m[y : y + s, x : x + s] = 1.0
    return m


def _coverage(box: list[int], factor: int) -> np.ndarray:
    """How much of each latent pixel's patch the object's *box* covers: the same for
    every shape, so where and how big is said apart from what."""
    g = sd.IMAGE_SIZE // factor
    return _inside(box).reshape(g, factor, g, factor).mean(axis=(1, 3))


def slots(spec: dict) -> list[dict]:
    """The scene's objects in slot order, as the image shows them: like objects (a
    count's) left to right, as they stand in their columns; two different ones (a
    relation's) along the axis they are set apart on most, left or top first."""
    objs = spec["objects"]
    centres = np.array([sd.centre(o["box"]) for o in objs])
    alike = len({(o["color"], o["shape"]) for o in objs}) == 1
    axis = 0 if alike else int(np.ptp(centres[:, 1]) > np.ptp(centres[:, 0]))
    return [objs[i] for i in np.argsort(centres[:, axis], kind="stable")]


def of_spec(spec: dict, factor: int = 4) -> np.ndarray:
    """(CHANNELS, 64/factor, 64/factor) float32; an empty slot has no coverage and zero
    colour and shape."""
    g = sd.IMAGE_SIZE // factor
    z = np.zeros((CHANNELS, g, g), dtype=np.float32)
    z[BACKGROUND] = _rgb(spec["background"])[:, None, None]
    z[list(COVERAGE)] = -1.0
    for k, o in enumerate(slots(spec)):
        z[COVERAGE[k]] = 2 * _coverage(o["box"], factor) - 1
        z[COLOR[k]] = _rgb(o["color"])[:, None, None]
        z[SHAPE[k].start + sd.SHAPES.index(o["shape"])] = 1.0
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
    kernel = torch.exp(-(k[None] ** 2) / (2 * sigma[:, None].clamp(min=1e-3) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 5)
    obj = z[:, BACKGROUND.stop :]
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

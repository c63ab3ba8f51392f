"""Latents that say what a scene holds, written from its spec, for the VAE's decoder to draw.

A learned autoencoder keeps a shape as a subtle pattern of a few latent values at an
object's edge, while its colour moves many values a long way: the UNet learns colour
from the caption early and shape hardly at all (training/README.md, "What limited
shape with a learned autoencoder"). Here every latent pixel (a 4×4 patch of the image)
says outright what the scene holds, in two object *slots*:

    channels 0-2     the scene's background colour (RGB in [-1, 1]), everywhere
    slot 0, 3-11     how much of the patch an object's box covers (0..1 -> [-1, 1]),
                     then the slot's colour (RGB) and shape (one-hot), everywhere
    slot 1, 12-20    the same for a second, different object

A single object, and the like objects of a count, fill slot 0; the two objects of a
relation fill slot 0 (the one on the left, or on top) and slot 1. A colour or shape is
then a value of the whole latent, as the background is, which the UNet reads from the
caption as surely as the background, rather than a value of the pixels where an
object lands; which object goes where is said by the two coverage channels alone
(training/README.md, "Object slots"). The decoder of an ordinary AutoencoderKL learns
to draw scenes from these latents, and its encoder to read them back; the pipeline,
export and runner see a plain diffusers VAE.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

try:  # imported as training.semantic_latents, or beside the scripts in training/
    from . import shapes_data as sd
except ImportError:
    import shapes_data as sd

SLOTS, _SLOT = 2, 1 + 3 + len(sd.SHAPES)  # coverage, colour, shape
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
    m[y:y + s, x:x + s] = 1.0
    return m


def _coverage(box: list[int], factor: int) -> np.ndarray:
    """How much of each latent pixel's patch the object's *box* covers: the same for
    every shape, so where and how big is said apart from what."""
    g = sd.IMAGE_SIZE // factor
    return _inside(box).reshape(g, factor, g, factor).mean(axis=(1, 3))


def slots(spec: dict) -> list[list[dict]]:
    """The scene's objects by slot: objects that differ (a relation's two) in the order
    the image shows them along the axis they are set apart on, left or top first;
    like objects (a count's) share slot 0. Said by the image, not the caption's order."""
    objs = spec["objects"]
    if len({(o["color"], o["shape"]) for o in objs}) == 1:
        return [objs]
    a, b = objs
    centre = [[o["box"][i] + o["box"][2] / 2 for i in (0, 1)] for o in objs]
    axis = int(abs(centre[1][1] - centre[0][1]) > abs(centre[1][0] - centre[0][0]))
    return [[a], [b]] if centre[0][axis] <= centre[1][axis] else [[b], [a]]


def of_spec(spec: dict, factor: int = 4) -> np.ndarray:
    """(CHANNELS, 64/factor, 64/factor) float32; an empty slot has no coverage and zero
    colour and shape."""
    g = sd.IMAGE_SIZE // factor
    z = np.zeros((CHANNELS, g, g), dtype=np.float32)
    z[BACKGROUND] = _rgb(spec["background"])[:, None, None]
    z[list(COVERAGE)] = -1.0
    for k, objs in enumerate(slots(spec)):
        z[COVERAGE[k]] = 2 * np.maximum.reduce([_coverage(o["box"], factor) for o in objs]) - 1
        z[COLOR[k]] = _rgb(objs[0]["color"])[:, None, None]
        z[SHAPE[k].start + sd.SHAPES.index(objs[0]["shape"])] = 1.0
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

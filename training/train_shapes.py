"""Train genbatch's default "shapes" model from scratch and save it as a diffusers folder.

    python training/train_shapes.py                       # the recipe (training/README.md)
    python training/train_shapes.py --out /tmp/shapes --set diffusion.steps=50   # smoke

Steps:
  1. Write a word-level CLIP tokenizer (vocab.json + merges.txt) for the caption grammar.
  2. Train a small AutoencoderKL whose decoder draws 64x64 scenes from their 16x16x30
     semantic latents (semantic_latents.py) and whose encoder reads them back, on random
     32x32 crops (it is fully convolutional, and crops cost a quarter of whole scenes).
  3. Render a fixed cache of training scenes and write their semantic latents.
  4. Train a CLIPTextModel and a UNet2DConditionModel together (v-prediction on a cosine
     schedule, low-noise steps capped as min-SNR does, object pixels weighted up, caption
     dropout to "" for classifier-free guidance, EMA), scoring the EMA weights on
     held-out captions every `diffusion.eval_every` steps.
  5. Save a StableDiffusionPipeline folder (safetensors) with a DPM-Solver++ scheduler
     and genbatch.json (the runner's defaults).

Everything is seeded from config["seed"]; on one machine a run is repeatable.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checker as ck  # noqa: E402
import evaluate_shapes as ev  # noqa: E402
import semantic_latents as sl  # noqa: E402
import shapes_data as sd  # noqa: E402
from diffusers import (  # noqa: E402
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer  # noqa: E402

from genbatch.pipelines.model_files import read_timesteps  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "genbatch" / "pipelines" / "models" / "shapes"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- 1. tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible byte -> printable-character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE of one word (lower-case, no spaces)."""
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), math.inf), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
        rank, i = min(pairs)
        if rank == math.inf:
            break
        pair = (parts[i], parts[i + 1])
        merged, j = [], 0
        while j < len(parts):
            if j < len(parts) - 1 and (parts[j], parts[j + 1]) == pair:
                merged.append(parts[j] + parts[j + 1])
                j += 2
            else:
                merged.append(parts[j])
                j += 1
        parts = merged
    return parts


def build_tokenizer(out_dir: Path, max_length: int) -> CLIPTokenizer:
    """Byte-level base vocabulary plus merges that make every grammar word one token.

    Merges are added word by word, each new one ranked after all earlier ones, so a
    word that is already one token can never be split by a later merge.
    """
    base = list(bytes_to_unicode().values())
    vocab = base + [c + "</w>" for c in base]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in sd.vocabulary():
        while len(parts := _bpe(word, ranks)) > 1:
            pair = (parts[0], parts[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.append(pair[0] + pair[1])
    vocab += [BOS, EOS]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    (out_dir / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": max_length,
                "bos_token": BOS,
                "eos_token": EOS,
                "unk_token": EOS,
                "pad_token": EOS,
                "do_lower_case": True,
            },
            indent=2,
        )
    )
    (out_dir / "special_tokens_map.json").write_text(
        json.dumps({"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}, indent=2)
    )
    tok = CLIPTokenizer.from_pretrained(out_dir)
    for word in sd.vocabulary():
        ids = tok(word, add_special_tokens=False).input_ids
        assert len(ids) == 1, f"{word!r} is not one token: {ids}"
    return tok


def tokenize(tok: CLIPTokenizer, captions: list[str]) -> torch.Tensor:
    return tok(
        captions, padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


# --------------------------------------------------------------------------- 2. VAE


def warmup_cosine(total: int, warmup: int):
    """Learning-rate factor: linear warm-up, then cosine decay to 10%."""
    return lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / total)))


def make_vae(cfg: dict) -> AutoencoderKL:
    c = cfg["vae"]
    n = len(c["block_out_channels"])
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(c["block_out_channels"]),
        layers_per_block=c["layers_per_block"],
        latent_channels=c["latent_channels"],
        norm_num_groups=c["norm_num_groups"],
        sample_size=cfg["image_size"],
        mid_block_add_attention=c.get("mid_block_add_attention", True),
    )


def vae_step(vae: AutoencoderKL, opt, sched, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    opt.step()
    sched.step()


def crop_offsets(rng: random.Random, n: int, size: int, crop: int, step: int) -> list[tuple[int, int]]:
    """n random (row, column) corners of crop×crop windows in a size×size scene, on a
    grid of `step` pixels (the latent factor, so image and latent crops line up)."""
    return [(rng.randrange(0, size - crop + 1, step), rng.randrange(0, size - crop + 1, step)) for _ in range(n)]


def cut(t: torch.Tensor, offs: list[tuple[int, int]], crop: int, factor: int = 1) -> torch.Tensor:
    """The windows at offs (in image pixels) of a batch of images (factor 1) or latents."""
    return torch.stack(
        [x[:, i // factor : (i + crop) // factor, j // factor : (j + crop) // factor] for x, (i, j) in zip(t, offs)]
    )


def train_semantic_vae(cfg: dict, rng: random.Random, device: str) -> AutoencoderKL:
    """The decoder learns to draw scenes from their semantic latents (roughened as a
    UNet's will be), the encoder to read them back from the image."""
    c = cfg["vae"]
    vae = make_vae(cfg).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=c["lr"], weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(c["steps"], 50))
    g = torch.Generator().manual_seed(cfg["seed"])
    t0 = time.time()
    for step in range(c["steps"]):
        images, _, specs = sd.batch(rng, c["batch_size"], say_background=cfg["diffusion"].get("say_background", 1.0))
        x = ev.to_tensor(images)
        w = torch.from_numpy(np.stack([sl.box_mask(s) for s in specs]))[:, None]
        f = latent_factor(cfg)
        z = sl.of_specs(specs, f)
        rough = sl.roughen(z, g)  # on whole scenes, then cropped
        if (crop := c["crop"]) < cfg["image_size"]:
            offs = crop_offsets(rng, len(x), cfg["image_size"], crop, f)
            x, w = cut(x, offs, crop), cut(w, offs, crop)
            z, rough = cut(z, offs, crop, f), cut(rough, offs, crop, f)
        w = 1 + c.get("object_weight", 0) * w
        w = (w / w.mean(dim=(2, 3), keepdim=True)).to(device)
        x, z, rough = x.to(device), z.to(device), rough.to(device)
        rec = vae.decode(rough).sample
        read = vae.encode(x).latent_dist.mean
        draw_loss = (w * ((rec - x) ** 2 + 0.5 * (rec - x).abs())).mean()
        read_loss = F.mse_loss(read, z)
        loss = draw_loss + read_loss
        vae_step(vae, opt, sched, loss)
        if step % 100 == 0 or step == c["steps"] - 1:
            log(f"vae step {step:5d} draw {draw_loss.item():.4f} read {read_loss.item():.4f} ({time.time() - t0:.0f}s)")
    sl.make_encoder_certain(vae)
    vae.eval()
    return vae


# --------------------------------------------------------------------------- 4. diffusion


def latent_factor(cfg: dict) -> int:
    """How many image pixels one latent pixel spans per side (the VAE halves per level)."""
    return 2 ** (len(cfg["vae"]["block_out_channels"]) - 1)


def make_unet(cfg: dict, text_dim: int) -> UNet2DConditionModel:
    c = cfg["unet"]
    f = latent_factor(cfg)
    return UNet2DConditionModel(
        sample_size=cfg["image_size"] // f,
        in_channels=cfg["vae"]["latent_channels"],
        out_channels=cfg["vae"]["latent_channels"],
        down_block_types=tuple(c["down_block_types"]),
        up_block_types=tuple(c["up_block_types"]),
        block_out_channels=tuple(c["block_out_channels"]),
        layers_per_block=c["layers_per_block"],
        cross_attention_dim=text_dim,
        attention_head_dim=c["attention_head_dim"],
        norm_num_groups=c["norm_num_groups"],
        # a pooled text embedding joins the time embedding: every ResNet block sees the
        # caption, not only the cross-attention layers
        addition_embed_type=c.get("addition_embed_type"),
        addition_embed_type_num_heads=c.get("addition_embed_type_num_heads", 64),
    )


def make_text_encoder(cfg: dict, tok: CLIPTokenizer) -> CLIPTextModel:
    c = cfg["text_encoder"]
    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=c["hidden_size"],
            intermediate_size=c["intermediate_size"],
            num_hidden_layers=c["num_hidden_layers"],
            num_attention_heads=c["num_attention_heads"],
            max_position_embeddings=tok.model_max_length,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )


def foreground_mask(images: np.ndarray, backgrounds: list[str], factor: int) -> torch.Tensor:
    """(n, 1, h/f, w/f): 1 where any pixel of the latent pixel's f×f patch belongs to an
    object, else 0. The diffusion loss weighs those latent pixels 1 + foreground_weight
    (pixel_weights).

    Objects cover a small share of a scene, so with a plain mean the loss is mostly
    background, which the model gets right early; the shape, count and placement of
    objects live in few latent pixels and are learned late."""
    bg = np.array([sd.PALETTE[b] for b in backgrounds], dtype=np.uint8)[:, None, None, :]
    fg = torch.from_numpy((images != bg).any(-1)).float()[:, None]
    return F.max_pool2d(fg, factor)


def pixel_weights(mask: torch.Tensor, foreground_weight: float) -> torch.Tensor:
    """Per-latent-pixel loss weights, 1 + foreground_weight on objects and 1 elsewhere,
    rescaled to a mean of 1 per image: the loss's scale (and so the step size) stays as
    without weighting, only its spread over the pixels moves."""
    w = 1 + foreground_weight * mask
    return w / w.mean(dim=(2, 3), keepdim=True)


def timestep_weights(noise_sched: DDPMScheduler, gamma: float) -> torch.Tensor:
    """Loss weight per training timestep, capping easy low-noise steps (min-SNR, Hang et
    al. 2023) without starving the high-noise ones.

    Published min-SNR-gamma weighs the error of the implied clean latents by
    min(SNR, gamma), which vanishes at high noise (4e-5 at t = 999 on the linear
    schedule): the model was then never taught what to predict from near-pure noise, and
    made up a layout from the noise itself. With v-prediction the clean-latent error is
    weighted min(SNR + 1, gamma) here instead: plain v-loss (weight 1) wherever the SNR
    is below gamma - 1, min-SNR's cap above it."""
    acp = noise_sched.alphas_cumprod
    snr = acp / (1 - acp)
    if noise_sched.config.prediction_type == "v_prediction":
        return torch.clamp(snr + 1, max=gamma) / (snr + 1)
    return torch.clamp(snr, max=gamma) / snr  # epsilon: the published form


def train_diffusion(
    cfg, tok, latents, ids, rng_t: torch.Generator, device: str, evaluate=None, weights: torch.Tensor | None = None
):
    """Text encoder + UNet, jointly; `evaluate(unet, text_encoder)` is called with the EMA
    weights every `diffusion.eval_every` steps, so the log shows the learning curve.
    `weights` (one per latent pixel of each cached scene) weigh the squared error."""
    c = cfg["diffusion"]
    text_encoder = make_text_encoder(cfg, tok).to(device)
    unet = make_unet(cfg, cfg["text_encoder"]["hidden_size"]).to(device)
    noise_sched = DDPMScheduler(**cfg["scheduler"])
    weight = timestep_weights(noise_sched, c["min_snr_gamma"]).to(device)
    params = list(unet.parameters()) + list(text_encoder.parameters())
    # fused: one kernel per step instead of a Python loop over ~400 tensors (~10% of a step)
    opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=0.01, fused=True)
    total = c["steps"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total, c["warmup"]))
    ema = [copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)]
    empty = tokenize(tok, [""])[0].to(device)
    latents, ids = latents.to(device), ids.to(device)
    if weights is not None:
        weights = weights.to(device)
    t0 = time.time()
    for step in range(total):
        idx = torch.randint(0, len(latents), (c["batch_size"],), generator=rng_t).to(device)
        x0 = latents[idx]
        tokens = ids[idx].clone()
        drop = (torch.rand(len(idx), generator=rng_t) < c["caption_dropout"]).to(device)
        tokens[drop] = empty
        noise = torch.randn(x0.shape, generator=rng_t).to(device)
        t = torch.randint(0, noise_sched.config.num_train_timesteps, (len(idx),), generator=rng_t)
        t = t.to(device)
        xt = noise_sched.add_noise(x0, noise, t)
        cond = text_encoder(tokens)[0]
        pred = unet(xt, t, cond).sample
        if noise_sched.config.prediction_type == "v_prediction":
            target = noise_sched.get_velocity(x0, noise, t)
        else:
            target = noise
        err = (pred - target) ** 2
        if weights is not None:
            err = err * weights[idx]
        loss = (weight[t] * err.mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, c["grad_clip"])
        opt.step()
        sched.step()
        decay = min(c["ema_decay"], (1 + step) / (10 + step))
        with torch.no_grad():
            for live, avg in zip((unet, text_encoder), ema):
                for p, q in zip(live.parameters(), avg.parameters()):
                    q.lerp_(p, 1 - decay)
        if step % 100 == 0 or step == total - 1:
            log(
                f"diffusion step {step:5d} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"({time.time() - t0:.0f}s)"
            )
        if evaluate and c.get("eval_every") and (step + 1) % c["eval_every"] == 0 and step + 1 < total:
            evaluate(ema[0].eval(), ema[1].eval())
            ema[0].train(), ema[1].train()
    return ema[0].eval(), ema[1].eval()


# --------------------------------------------------------------------------- 5. save


def make_pipeline(cfg, vae, text_encoder, unet, tok: CLIPTokenizer) -> StableDiffusionPipeline:
    scheduler = DPMSolverMultistepScheduler(
        **cfg["scheduler"], algorithm_type="dpmsolver++", steps_offset=1, solver_order=2
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tok,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save(cfg, out: Path, vae, text_encoder, unet, tok_dir: Path) -> None:
    pipe = make_pipeline(cfg, vae.cpu(), text_encoder.cpu(), unet.cpu(), CLIPTokenizer.from_pretrained(tok_dir))
    pipe.save_pretrained(out, safe_serialization=True)
    # the tokenizer files as written by build_tokenizer (a plain, hub-free CLIP layout)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (out / "tokenizer" / name).write_bytes((tok_dir / name).read_bytes())
    for extra in ("tokenizer.json", "added_tokens.json", "chat_template.jinja"):
        (out / "tokenizer" / extra).unlink(missing_ok=True)
    d = cfg["defaults"]
    (out / "genbatch.json").write_text(
        json.dumps(
            {
                "name": "shapes",
                "description": "genbatch's own tiny text-to-image model: flat-colour shapes, colours, "
                "relations and counts (64x64, trained from scratch)",
                "steps": d["steps"],
                "guidance_scale": d["guidance_scale"],
                **({"timesteps": d["timesteps"]} if d.get("timesteps") else {}),
                "width": cfg["image_size"],
                "height": cfg["image_size"],
            },
            indent=2,
        )
        + "\n"
    )


def set_path(cfg: dict, assignment: str) -> None:
    key, value = assignment.split("=", 1)
    *parents, leaf = key.split(".")
    node = cfg
    for p in parents:
        node = node[p]
    node[leaf] = json.loads(value)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=HERE / "config.json")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a config value, e.g. diffusion.steps=100",
    )
    args = ap.parse_args(argv)
    cfg = json.loads(args.config.read_text())
    for a in args.set:
        set_path(cfg, a)
    if cfg["vae"].get("latents", "semantic") != "semantic":
        sys.exit(
            f'{args.config}: vae.latents must be "semantic" (a learned autoencoder: '
            "training/experiments/learned-autoencoder.patch)"
        )
    # the model's own timesteps, checked as genbatch will check the saved genbatch.json
    # (before an hour of training, not after), with int keys as genbatch reads them
    own = cfg["defaults"].get("timesteps")
    timesteps = read_timesteps(args.config, own, cfg["scheduler"]["num_train_timesteps"]) if own else {}
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    rng = random.Random(cfg["seed"])
    rng_t = torch.Generator().manual_seed(cfg["seed"])
    start = time.time()
    log(f"config: {json.dumps(cfg)}")

    # 1. tokenizer
    tok_dir = args.out.parent / (args.out.name + ".tokenizer-tmp")
    tok = build_tokenizer(tok_dir, cfg["tokenizer"]["model_max_length"])
    log(f"tokenizer: {len(tok)} tokens, max length {tok.model_max_length}")

    # 2. VAE
    vae = train_semantic_vae(cfg, rng, args.device)

    # 3. latent cache
    # say_background: the share of captions that name the background (1.0 draws nothing
    # extra from rng, so earlier runs repeat exactly)
    images, captions, specs = sd.batch(
        rng, cfg["diffusion"]["cache_size"], say_background=cfg["diffusion"].get("say_background", 1.0)
    )
    latents = sl.of_specs(specs, latent_factor(cfg))
    scale = 1.0 / latents.std().item()
    vae.register_to_config(scaling_factor=scale)
    with torch.no_grad():
        rec = vae.decode(latents[:256].to(args.device)).sample.cpu().clamp(-1, 1)
    rec_err = (rec - ev.to_tensor(images[:256])).abs().mean().item()
    rec_u8 = ev.to_uint8(rec)
    fidelity = ck.summarize([ck.score(im, s) for im, s in zip(rec_u8, specs[:256])])
    log(
        f"cache: {len(latents)} scenes, latent std {1 / scale:.3f}, reconstruction L1 {rec_err:.4f}, "
        f"checker on reconstructions: {ev.fmt(fidelity)}"
    )
    ids = tokenize(tok, captions)
    weights = None
    if fg_weight := cfg["diffusion"].get("foreground_weight"):
        mask = foreground_mask(images, [s["background"] for s in specs], latent_factor(cfg))
        weights = pixel_weights(mask, fg_weight)
    del images

    # 4. text encoder + UNet
    def evaluate(unet, text_encoder, n=cfg["diffusion"].get("eval_n", 128)):
        pipe = make_pipeline(cfg, vae, text_encoder, unet, tok)
        t = time.time()
        d = cfg["defaults"]
        steps = ev.sampling({"timesteps": timesteps}, d["steps"])  # as genbatch runs the saved model
        res = ev.adherence(pipe, n, steps, d["guidance_scale"])
        log(f"eval on {n} held-out captions ({time.time() - t:.0f}s): {ev.fmt(res['model'])}")
        return res

    unet, text_encoder = train_diffusion(cfg, tok, latents * scale, ids, rng_t, args.device, evaluate, weights)
    evaluate(unet, text_encoder)

    # 5. save
    save(cfg, args.out, vae, text_encoder, unet, tok_dir)
    for f in tok_dir.iterdir():
        f.unlink()
    tok_dir.rmdir()
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file()) / 1e6
    log(
        f"saved {args.out} ({size:.1f} MB); wall clock {(time.time() - start) / 60:.1f} min, "
        f"process CPU time {time.process_time() / 60:.1f} min on {cfg['threads']} threads"
    )


if __name__ == "__main__":
    main()

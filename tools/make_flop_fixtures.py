"""FLOP counts of diffusers' models, the reference for kiln's op counters (`kiln bench`).

What it makes: fixtures/flops/flops.json, a list of cases, each
  {"name", "model": "tiny/sd15" | "published/sd15" | ..., "component": "unet" | "vae_decoder",
   "batch", "latent": [h, w], "tokens": 77, "flops": int}
counted by `torch.utils.flop_counter.FlopCounterMode` (2 FLOP per multiply-add: linear and
conv 2·M·N·K, scaled dot-product attention 4·B·H·Lq·Lk·D; norms and element-wise ops are
not counted) on one forward pass:
  - the tiny SD 1.5 and SDXL UNets and VAEs of fixtures/tiny/ (their config.json), which
    runner tests compare kiln's counts with exactly;
  - the published SD 1.5 and SDXL base UNets and VAE decoders (tools/published_configs.py),
    built on the meta device (no weights), for benches/RESULTS.md: UNet at batch 2 (one
    guided step) at 512² / 1024², VAE decode of one 512² / 1024² image.
The VAE counts are of `post_quant_conv` + the decoder, what `Vae::decode` runs.

Run: python tools/make_flop_fixtures.py   (CPU; a few seconds)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode

import published_configs

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "flops" / "flops.json"


def count(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def unet_case(name: str, config: dict, batch: int, latent: int, device: str) -> dict:
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(config).eval()
        x = torch.randn(batch, config["in_channels"], latent, latent)
        t = torch.full((batch,), 500.0)
        ctx = torch.randn(batch, 77, config["cross_attention_dim"])
        added = None
        if config.get("addition_embed_type") == "text_time":
            time_dim = config["addition_time_embed_dim"]
            n_ids = 6
            pooled = config["projection_class_embeddings_input_dim"] - n_ids * time_dim
            added = {"text_embeds": torch.randn(batch, pooled), "time_ids": torch.randn(batch, n_ids)}
    with torch.no_grad():
        flops = count(lambda: unet(x, t, ctx, added_cond_kwargs=added))
    return {"name": name, "component": "unet", "batch": batch, "latent": [latent, latent], "tokens": 77, "flops": flops}


def vae_case(name: str, config: dict, batch: int, latent: int, device: str) -> dict:
    with torch.device(device):
        vae = AutoencoderKL.from_config(config).eval()
        z = torch.randn(batch, config["latent_channels"], latent, latent)
    with torch.no_grad():
        flops = count(lambda: vae.decode(z))
    return {"name": name, "component": "vae_decoder", "batch": batch, "latent": [latent, latent], "flops": flops}


def main() -> None:
    cases = []
    for family in ("sd15", "sdxl"):
        folder = ROOT / "fixtures" / "tiny" / family
        unet = json.loads((folder / "unet" / "config.json").read_text())
        vae = json.loads((folder / "vae" / "config.json").read_text())
        cases.append(unet_case(f"tiny/{family}", unet, 2, 8, "cpu"))
        cases.append(vae_case(f"tiny/{family}", vae, 1, 8, "cpu"))
    for family, key, latent in (("sd15", "sd15", 64), ("sdxl", "sdxl_base", 128)):
        configs = published_configs.family(key)
        cases.append(unet_case(f"published/{family}", configs["unet"], 2, latent, "meta"))
        cases.append(unet_case(f"published/{family}", configs["unet"], 1, latent, "meta"))
        cases.append(vae_case(f"published/{family}", configs["vae"], 1, latent, "meta"))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(cases, indent=1) + "\n")
    for c in cases:
        print(f"{c['name']:<16} {c['component']:<12} batch {c['batch']} latent {c['latent']}: {c['flops'] / 1e12:.4f} TFLOP")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Regenerates runtime/tests/data/timestep_embedding_diffusers.json, the expected values of
kiln's `Tensor::timestep_embedding`, from diffusers' own `get_timestep_embedding` on CPU.

Usage (from the repository root, in an environment with torch and diffusers):
    python tools/timestep_embedding_ref.py
"""
import json
import pathlib

import diffusers
import torch
from diffusers.models.embeddings import get_timestep_embedding

TIMESTEPS = [0.0, 1.0, 17.5, 261.0, 999.0]
# (dim, flip_sin_to_cos, downscale_freq_shift, max_period): the SD/SDXL UNet settings at the
# SD 1.5 width and SDXL's add_time_proj width, then the DDPM defaults with an odd dim.
CONFIGS = [(320, True, 0.0, 10000), (256, True, 0.0, 10000), (7, False, 1.0, 10000), (16, False, 0.5, 500)]

cases = []
for dim, flip, shift, period in CONFIGS:
    emb = get_timestep_embedding(torch.tensor(TIMESTEPS), dim, flip, shift, max_period=period)
    cases.append({
        "dim": dim,
        "flip_sin_to_cos": flip,
        "downscale_freq_shift": shift,
        "max_period": period,
        "timesteps": TIMESTEPS,
        "expected": emb.flatten().tolist(),
    })

out = pathlib.Path(__file__).resolve().parent.parent / "runtime/tests/data/timestep_embedding_diffusers.json"
out.write_text(json.dumps({"diffusers": diffusers.__version__, "torch": torch.__version__, "cases": cases}) + "\n")
print(f"wrote {out}")

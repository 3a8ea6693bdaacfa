"""Write a full-size diffusers pipeline folder with random weights (no download), for timing.

    python3 benches/gpu/make_random_pipeline.py sdxl_base OUT_DIR
    python3 benches/gpu/make_random_pipeline.py sd15 OUT_DIR

The UNet, VAE and text encoders are built from the published configs in
tools/published_configs.py with their libraries' own random initialisation (on the GPU when
there is one, so SDXL's 3.5 billion parameters take seconds), and saved in f16 as safetensors.
Tokenizers, scheduler and model_index.json come from the tiny fixture of the same family, whose
tokenizer files are the published ones. kiln and diffusers then load the very same files.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from published_configs import family  # noqa: E402

# The tiny fixture whose tokenizers, scheduler and model_index.json a family reuses.
TINY = {"sd15": "sd15", "sdxl_base": "sdxl"}


def build(name: str, out: Path) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    configs = family(name)
    tiny = ROOT / "fixtures" / "tiny" / TINY[name]
    out.mkdir(parents=True, exist_ok=True)
    for part in ["model_index.json", "scheduler", "tokenizer", "tokenizer_2"]:
        src = tiny / part
        if src.is_dir():
            shutil.copytree(src, out / part, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy(src, out / part)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    for part, config in configs.items():
        if part in ("model_index.json", "scheduler"):
            continue
        started = time.time()
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        with torch.device(device):
            if part == "unet":
                model = UNet2DConditionModel.from_config(config)
            elif part == "vae":
                model = AutoencoderKL.from_config(config)
            else:
                kind = CLIPTextModelWithProjection if part == "text_encoder_2" else CLIPTextModel
                model = kind(CLIPTextConfig(**config))
        model = model.to(torch.float16)
        model.save_pretrained(out / part, safe_serialization=True)
        count = sum(p.numel() for p in model.parameters())
        print(f"{name}/{part}: {count:,} parameters in {time.time() - started:.1f} s", flush=True)
        del model
    print(json.dumps({"family": name, "folder": str(out)}))


if __name__ == "__main__":
    build(sys.argv[1], Path(sys.argv[2]))

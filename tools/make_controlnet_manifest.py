"""Tensor manifest (name, dtype, shape; no data) of the full-size SDXL canny ControlNet ->
fixtures/manifests/controlnet_sdxl_canny.single_file.json

The model is diffusers/controlnet-canny-sdxl-1.0 (the "full" SDXL ControlNet; users download it
as a single file in diffusers' naming, e.g. diffusers_xl_canny_full.safetensors, in F16). Its
config.json could not be fetched here; the values below are its published config as quoted in
several public copies (addition_embed_type text_time, transformer_layers_per_block [1, 2, 10],
attention_head_dim [5, 10, 20], use_linear_projection true, cross_attention_dim 2048,
projection_class_embeddings_input_dim 2816). The model is built on the meta device by diffusers'
ControlNetModel; its parameter count (1,251,014,160, about 2.5 GB in F16) is asserted.

Schema: as tools/make_key_manifests.py writes (read by kiln_runtime::checkpoint::manifest).

Run:   /work/venv/bin/python tools/make_controlnet_manifest.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import accelerate
import torch
from diffusers import ControlNetModel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_key_manifests as mkm  # noqa: E402  (compact writer)
import sdconvert as sc  # noqa: E402

CONFIG = {
    "_class_name": "ControlNetModel",
    "_diffusers_version": "0.20.0.dev0",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "class_embed_type": None,
    "conditioning_channels": 3,
    "conditioning_embedding_out_channels": [16, 32, 96, 256],
    "controlnet_conditioning_channel_order": "rgb",
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "encoder_hid_dim": None,
    "encoder_hid_dim_type": None,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "global_pool_conditions": False,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_attention_heads": None,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "projection_class_embeddings_input_dim": 2816,
    "resnet_time_scale_shift": "default",
    "transformer_layers_per_block": [1, 2, 10],
    "upcast_attention": None,
    "use_linear_projection": True,
}
PARAMETERS = 1_251_014_160
FILE = "diffusers_xl_canny_full.safetensors"


def main() -> None:
    with accelerate.init_empty_weights():
        model = ControlNetModel.from_config({k: v for k, v in CONFIG.items() if not k.startswith("_")})
    count = sum(p.numel() for p in model.parameters())
    assert count == PARAMETERS, count
    state = {k: torch.empty(v.shape, dtype=torch.float16, device="meta") for k, v in model.state_dict().items()}
    entries = mkm.name_order(sc.entries_of(state))
    manifest = {"family": "controlnet_sdxl_canny", "format": "single_file",
                "files": [{"path": FILE, "tensors": entries}], "configs": {"config.json": CONFIG},
                "parameters": {"controlnet": count}}
    path = mkm.write(manifest)
    print(f"{path}: {len(entries)} tensors, {count:,} parameters")
    assert json.loads(path.read_text())["parameters"]["controlnet"] == PARAMETERS


if __name__ == "__main__":
    main()

"""Tensor manifests (name, dtype, shape; no data) of the full-size SDXL IP-Adapter for ViT-H and of
the ViT-H/14 image encoder ->
  fixtures/manifests/ip_adapter_sdxl_vit_h.single_file.json   (ip-adapter_sdxl_vit-h.safetensors)
  fixtures/manifests/image_encoder_vit_h.single_file.json     (models/image_encoder/model.safetensors)

The files are h94/IP-Adapter's; neither could be fetched here, so the layouts are built from what
diffusers' loader requires of them and the published configs:
- the adapter: `image_proj.proj.{weight,bias}` [4 x 2048, 1024] and `image_proj.norm.*` [2048]
  (diffusers' ImageProjection with 4 tokens), and for each of the SDXL base UNet's 70
  cross-attentions in diffusers' processor order (down, up, mid blocks) the bias-free
  `ip_adapter.{2 i + 1}.to_k_ip.weight` / `to_v_ip.weight` [width, 2048]; F16 (as published).
- the encoder: transformers' CLIPVisionModelWithProjection with the ViT-H/14 config of
  h94/IP-Adapter models/image_encoder/config.json as quoted publicly (hidden 1280, 32 layers,
  16 heads, MLP 5120, projection 1024, exact GELU, 224 px in 14 px patches), built on the meta
  device; F16.
The widths per layer come from the SDXL base UNet built from tools/published_configs.py.

Run:   /work/venv/bin/python tools/make_ip_adapter_manifest.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import accelerate
import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_key_manifests as mkm  # noqa: E402  (compact writer)
import published_configs as pc  # noqa: E402
import sdconvert as sc  # noqa: E402

VIT_H = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=16,
             image_size=224, patch_size=14, projection_dim=1024, hidden_act="gelu", layer_norm_eps=1e-5)


def meta(shape) -> torch.Tensor:
    return torch.empty(shape, dtype=torch.float16, device="meta")


def main() -> None:
    with accelerate.init_empty_weights():
        unet = UNet2DConditionModel.from_config(pc.family("sdxl_base")["unet"])
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_H))
    cross = unet.config.cross_attention_dim
    adapter = {"image_proj.proj.weight": meta((4 * cross, VIT_H["projection_dim"])),
               "image_proj.proj.bias": meta((4 * cross,)), "image_proj.norm.weight": meta((cross,)),
               "image_proj.norm.bias": meta((cross,))}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        width = unet.get_submodule(name.removesuffix(".processor")).to_k.out_features
        for part in ("to_k_ip", "to_v_ip"):
            adapter[f"ip_adapter.{key_id}.{part}.weight"] = meta((width, cross))
        key_id += 2
    layers = (key_id - 1) // 2
    assert layers == 70, layers
    count = sum(t.numel() for t in adapter.values())
    path = mkm.write({"family": "ip_adapter_sdxl_vit_h", "format": "single_file",
                      "files": [{"path": "ip-adapter_sdxl_vit-h.safetensors",
                                 "tensors": mkm.name_order(sc.entries_of(adapter))}],
                      "configs": {}, "parameters": {"ip_adapter": count}})
    print(f"{path}: {len(adapter)} tensors, {layers} cross-attentions, {count:,} parameters")

    state = {k: meta(v.shape) for k, v in encoder.state_dict().items() if not k.endswith("position_ids")}
    count = sum(p.numel() for p in encoder.parameters())
    config = {"architectures": ["CLIPVisionModelWithProjection"], "model_type": "clip_vision_model", **VIT_H}
    path = mkm.write({"family": "image_encoder_vit_h", "format": "single_file",
                      "files": [{"path": "model.safetensors", "tensors": mkm.name_order(sc.entries_of(state))}],
                      "configs": {"config.json": config}, "parameters": {"image_encoder": count}})
    print(f"{path}: {len(state)} tensors, {count:,} parameters")


if __name__ == "__main__":
    main()

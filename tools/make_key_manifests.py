"""Tensor manifests (name, dtype, shape; no data) of the published full-size checkpoints ->
fixtures/manifests/{sd15,sd15_inpaint,sdxl_base,sdxl_refiner,sdxl_inpaint,ssd_1b}.{single_file,diffusers}.json

Each model is built at full size from its published config (tools/published_configs.py) on the
meta device (accelerate.init_empty_weights: no memory), its state dict gives the diffusers names
and shapes, and tools/sdconvert.py gives the single-file names, validated on the meta tensors with
diffusers' own original -> diffusers conversion (names, shapes, dtypes).

Schema (read by a Rust test; keep exactly):
  {"family": "sdxl_base", "format": "single_file" | "diffusers",
   "files": [{"path": "...", "tensors": [{"name": "...", "dtype": "F16", "shape": [320, 4, 3, 3]}, ...]}],
   "configs": {"model_index.json": {...}, "unet/config.json": {...}, ...},   # diffusers only; {} otherwise
   "parameters": {"unet": 2567463684, "vae": 83653863, ...}}
Written compactly: no indentation, one tensor per line (valid JSON, readable diffs).

Files and dtypes (as published):
  sd15          v1-5-pruned-emaonly.safetensors (F32);  diffusers: runwayml/stable-diffusion-v1-5
  sd15_inpaint  sd-v1-5-inpainting.safetensors (F32; published as sd-v1-5-inpainting.ckpt, this is its
                usual safetensors conversion); diffusers: runwayml/stable-diffusion-inpainting
  sdxl_base     sd_xl_base_1.0.safetensors (F16);  diffusers: stabilityai/stable-diffusion-xl-base-1.0
  sdxl_refiner  sd_xl_refiner_1.0.safetensors (F16);  diffusers: stabilityai/stable-diffusion-xl-refiner-1.0
  sdxl_inpaint  sd_xl_base_1.0_inpainting_0.1.safetensors (F16; a community conversion, the official
                repo diffusers/stable-diffusion-xl-1.0-inpainting-0.1 is diffusers-only)
  ssd_1b        SSD-1B.safetensors (F16, SGM naming as SDXL base's; segmind/SSD-1B also ships the
                diffusers folders). Its UNet parameter count (1,331,334,404) is computed from the
                config in published_configs.py: no published count was found to check it against.
  The diffusers manifests list the default (non-variant) files, which are F32 in all five
  repositories; each also has `*.fp16.safetensors` twins with the same names in F16.
  The SD 1.5 repositories' safety_checker/ and feature_extractor/ are not listed (see
  published_configs.py); model_index.json still names them, as published.

Tensor order: the order of the data in the published file. Files written by the safetensors
library since 2023 (the SDXL repositories) lay tensors out by dtype (I64 before F32 before I32
before F16: the library's Dtype enum, highest first), then by name. The SD 1.5 repositories'
files were converted in 2022 by an older safetensors that laid them out by name alone: for
v1-5-pruned-emaonly.safetensors only that order reproduces its published header length exactly,
and the same order is used for every SD 1.5 file.

Extra tensors (not in the models' state dicts) that the published files carry, and the evidence:
  v1-5-pruned-emaonly: ldm's 12 DDPM buffers betas, alphas_cumprod, alphas_cumprod_prev,
    sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod, log_one_minus_alphas_cumprod,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod, posterior_variance,
    posterior_log_variance_clipped, posterior_mean_coef1, posterior_mean_coef2 (F32 [1000]),
    cond_stage_model.transformer.text_model.embeddings.position_ids (I64 [1, 77]),
    model_ema.decay (F32 []), model_ema.num_updates (I32 []): 1145 tensors. Evidence: a public
    download receipt gives the file as 4,265,146,304 bytes, header_length 156444, tensor_count 1145,
    first key alphas_cumprod; this list reproduces both numbers exactly (asserted below). The same
    names are in stable-diffusion.cpp's list of unused tensors (model.cpp `unused_tensors`).
  sd-v1-5-inpainting: assumed the same extras (same ldm code and pruning); not verified.
  sd_xl_base_1.0: conditioner.embedders.0.transformer.text_model.embeddings.position_ids (I64 [1, 77])
    and conditioner.embedders.1.model.logit_scale (F16 []): 2513 model tensors + 2 = 2515.
    Evidence: a public design note that read the file's header from the Hub ("2515 tensors in f16",
    1680 UNet tensors, position_ids and logit_scale left unread), a ComfyUI checkpoint-inspection
    note ("2515 tensors") and a public fix-up tool that restores both keys ("4.6055, value from
    sd_xl base 1.0"); stable-diffusion.cpp lists both as unused. kiln's FACTS.md says 2,513
    tensors and 6,938,040,094 bytes; the Hub listing found with the `search` tool gives
    6,938,078,334 bytes, and 2,513 tensors without metadata would already need more than
    6,938,040,094, so 2,515 is used here (FACTS' 2,513 = the model tensors, asserted too).
  sd_xl_refiner_1.0: conditioner.embedders.0.model.logit_scale (F16 []): 1857 + 1 = 1858.
    Evidence: stable-diffusion.cpp's unused-tensor list names exactly this key (the refiner is the
    only SGM file with OpenCLIP at embedders.0); the published size 6,075,981,930 leaves ~37.9 KB
    of metadata, as the base file does (~37.2 KB, both carry modelspec metadata).
  sd_xl_base_1.0_inpainting_0.1: assumed the base file's extras; not verified.
  SSD-1B: assumed the base file's extras (position_ids, logit_scale): 1777 + 2 = 1779; not verified.
  Diffusers layout: SD 1.5's text_encoder/model.safetensors (both repos, converted with
    transformers 4.22) carries text_model.embeddings.position_ids (I64 [1, 77]); SDXL's do not
    (transformers >= 4.31 made it non-persistent). Checked against the published file sizes below.

Published file sizes (Hub file listing printed by a public script, found with the `search` tool)
are compared with the size of a safetensors file holding exactly the manifest's tensors; the files
written with today's serialization match to the byte, the 2022 SD 1.5 files within a few bytes
(their header order is not reproducible); a missing or extra tensor would move the size by more
than 60 bytes.

Run:   /work/venv/bin/python tools/make_key_manifests.py      (about a minute; no network)
Needs: torch 2.15.0, diffusers 0.42.1, transformers 5.23.0, accelerate 1.15.0 (tools/requirements.txt)
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import published_configs as pc  # noqa: E402
import sdconvert as sc  # noqa: E402

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import accelerate  # noqa: E402
from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "manifests"

FAMILIES = ["sd15", "sd15_inpaint", "sdxl_base", "sdxl_refiner", "sdxl_inpaint", "ssd_1b"]

SINGLE_FILE = {
    "sd15": "v1-5-pruned-emaonly.safetensors",
    "sd15_inpaint": "sd-v1-5-inpainting.safetensors",
    "sdxl_base": "sd_xl_base_1.0.safetensors",
    "sdxl_refiner": "sd_xl_refiner_1.0.safetensors",
    "sdxl_inpaint": "sd_xl_base_1.0_inpainting_0.1.safetensors",
    "ssd_1b": "SSD-1B.safetensors",
}
DIFFUSERS_FILE = {
    "unet": "unet/diffusion_pytorch_model.safetensors",
    "vae": "vae/diffusion_pytorch_model.safetensors",
    "text_encoder": "text_encoder/model.safetensors",
    "text_encoder_2": "text_encoder_2/model.safetensors",
}
CONFIG_FILE = {
    "model_index.json": "model_index.json",
    "unet": "unet/config.json",
    "vae": "vae/config.json",
    "text_encoder": "text_encoder/config.json",
    "text_encoder_2": "text_encoder_2/config.json",
    "scheduler": "scheduler/scheduler_config.json",
}

# Published parameter counts (FACTS.md, and + 5 * 320 * 9 conv_in weights for the 9-channel UNets).
PARAMETERS = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sd15_inpaint": {"unet": 859_535_364, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl_base": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                  "text_encoder_2": 694_659_840},
    "sdxl_refiner": {"unet": 2_259_526_660, "vae": 83_653_863, "text_encoder_2": 694_659_840},
    "sdxl_inpaint": {"unet": 2_567_478_084, "vae": 83_653_863, "text_encoder": 123_060_480,
                     "text_encoder_2": 694_659_840},
    "ssd_1b": {"unet": 1_331_334_404, "vae": 83_653_863, "text_encoder": 123_060_480,
               "text_encoder_2": 694_659_840},
}
# Tensors in the published single files: (model state-dict tensors, with the extras).
SINGLE_FILE_COUNTS = {
    "sd15": (1130, 1145), "sd15_inpaint": (1130, 1145), "sdxl_base": (2513, 2515),
    "sdxl_refiner": (1857, 1858), "sdxl_inpaint": (2513, 2515), "ssd_1b": (1777, 1779),
}

# A few names, dtypes and shapes of the published single files, pinned by hand as a check on
# sdconvert that does not go through diffusers (e.g. bigG's fused in_proj [3840, 1280] and the
# VAE's 1x1-conv attention are as public readers of the real headers describe them).
SPOT_CHECKS = {
    "sd15": [
        ("model.diffusion_model.input_blocks.0.0.weight", "F32", [320, 4, 3, 3]),
        ("model.diffusion_model.input_blocks.1.1.proj_in.weight", "F32", [320, 320, 1, 1]),
        ("model.diffusion_model.output_blocks.2.1.conv.weight", "F32", [1280, 1280, 3, 3]),
        ("model.diffusion_model.output_blocks.8.2.conv.weight", "F32", [640, 640, 3, 3]),
        ("first_stage_model.encoder.mid.attn_1.q.weight", "F32", [512, 512, 1, 1]),
        ("first_stage_model.decoder.up.0.block.0.nin_shortcut.weight", "F32", [128, 256, 1, 1]),
        ("cond_stage_model.transformer.text_model.final_layer_norm.weight", "F32", [768]),
    ],
    "sd15_inpaint": [("model.diffusion_model.input_blocks.0.0.weight", "F32", [320, 9, 3, 3])],
    "sdxl_base": [
        ("model.diffusion_model.label_emb.0.0.weight", "F16", [1280, 2816]),
        ("model.diffusion_model.input_blocks.4.1.proj_in.weight", "F16", [640, 640]),
        ("model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight", "F16", [1280, 2048]),
        ("model.diffusion_model.middle_block.1.transformer_blocks.9.ff.net.0.proj.weight", "F16", [10240, 1280]),
        ("model.diffusion_model.output_blocks.2.2.conv.weight", "F16", [1280, 1280, 3, 3]),
        ("conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight", "F16", [3840, 1280]),
        ("conditioner.embedders.1.model.text_projection", "F16", [1280, 1280]),
        ("conditioner.embedders.1.model.positional_embedding", "F16", [77, 1280]),
        ("first_stage_model.decoder.up.3.upsample.conv.weight", "F16", [512, 512, 3, 3]),
    ],
    "sdxl_refiner": [
        ("model.diffusion_model.label_emb.0.0.weight", "F16", [1536, 2560]),
        ("model.diffusion_model.input_blocks.10.0.in_layers.2.weight", "F16", [1536, 1536, 3, 3]),
        ("model.diffusion_model.output_blocks.2.1.conv.weight", "F16", [1536, 1536, 3, 3]),
        ("model.diffusion_model.output_blocks.5.2.conv.weight", "F16", [1536, 1536, 3, 3]),
        ("model.diffusion_model.input_blocks.4.1.transformer_blocks.3.attn2.to_k.weight", "F16", [768, 1280]),
        ("conditioner.embedders.0.model.transformer.resblocks.0.attn.in_proj_weight", "F16", [3840, 1280]),
    ],
    "sdxl_inpaint": [("model.diffusion_model.input_blocks.0.0.weight", "F16", [320, 9, 3, 3])],
    "ssd_1b": [
        ("model.diffusion_model.middle_block.0.in_layers.2.weight", "F16", [1280, 1280, 3, 3]),
        ("model.diffusion_model.input_blocks.8.1.transformer_blocks.3.attn2.to_k.weight", "F16", [1280, 2048]),
        ("model.diffusion_model.output_blocks.2.1.transformer_blocks.9.attn1.to_q.weight", "F16", [1280, 1280]),
        ("model.diffusion_model.output_blocks.2.2.conv.weight", "F16", [1280, 1280, 3, 3]),
        ("model.diffusion_model.output_blocks.3.1.transformer_blocks.1.norm3.weight", "F16", [640]),
    ],
}

# Published file sizes in bytes (Hub listings, see the header). "modern": safetensors >= 0.3
# serialization ({"format": "pt"} metadata, dtype-then-name order, header padded to 8 bytes),
# must match exactly; "2022": older serialization, must match within TOLERANCE.
TOLERANCE = 16
PUBLISHED_SIZES = {
    ("sd15", "unet/diffusion_pytorch_model.safetensors"): (3_438_167_540, "2022"),
    ("sd15", "vae/diffusion_pytorch_model.safetensors"): (334_643_276, "2022"),
    ("sd15", "text_encoder/model.safetensors"): (492_265_874, "2022"),
    ("sdxl_base", "unet/diffusion_pytorch_model.safetensors"): (10_270_077_736, "modern"),
    ("sdxl_base", "vae/diffusion_pytorch_model.safetensors"): (334_643_268, "modern"),
    ("sdxl_base", "text_encoder/model.safetensors"): (492_265_168, "modern"),
    ("sdxl_base", "text_encoder_2/model.safetensors"): (2_778_702_264, "2022"),  # order differs slightly
    # stable-diffusion-xl-refiner-0.9's files (same architecture; 1.0's sizes were not found)
    ("sdxl_refiner", "unet/diffusion_pytorch_model.safetensors"): (9_038_264_392, "modern"),
    ("sdxl_refiner", "vae/diffusion_pytorch_model.safetensors"): (334_643_268, "modern"),
}
# v1-5-pruned-emaonly.safetensors: header length and file size from a public download receipt.
SD15_SINGLE_HEADER_LENGTH = 156_444
SD15_SINGLE_SIZE = 4_265_146_304
# SGM files carry ~37 KB of modelspec metadata of unknown content: only check there is room for it.
SGM_SINGLE_SIZES = {"sdxl_base": 6_938_078_334, "sdxl_refiner": 6_075_981_930}


# ----------------------------------------------------------------------------------------------
# Building on the meta device
# ----------------------------------------------------------------------------------------------


def text_config(cfg: dict) -> CLIPTextConfig:
    skip = {"architectures", "torch_dtype", "transformers_version", "model_type"}
    return CLIPTextConfig(**{k: v for k, v in cfg.items() if not k.startswith("_") and k not in skip})


def build(family: str) -> tuple[dict, dict]:
    """(component -> meta model, published configs)."""
    cfgs = pc.family(family)
    models = {}
    with accelerate.init_empty_weights():
        models["unet"] = UNet2DConditionModel.from_config(cfgs["unet"])
        models["vae"] = AutoencoderKL.from_config(cfgs["vae"])
        if "text_encoder" in cfgs:
            models["text_encoder"] = CLIPTextModel(text_config(cfgs["text_encoder"]))
        if "text_encoder_2" in cfgs:
            models["text_encoder_2"] = CLIPTextModelWithProjection(text_config(cfgs["text_encoder_2"]))
    return models, cfgs


def meta_state_dict(model: torch.nn.Module, dtype: torch.dtype) -> dict:
    return {k: torch.empty(v.shape, dtype=dtype if v.is_floating_point() else v.dtype, device="meta")
            for k, v in model.state_dict().items()}


def _meta(shape, dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def is_sd15(family: str) -> bool:
    return family.startswith("sd15")


def diffusers_tensors(family: str, models: dict) -> dict[str, dict]:
    """Component -> published diffusers-layout state dict (meta, F32)."""
    out = {}
    for comp, m in models.items():
        sd = meta_state_dict(m, torch.float32)
        if comp.startswith("text_encoder"):
            sd = sc.clip_with_text_model_prefix(sd)
            if is_sd15(family):  # saved by transformers 4.22: position_ids was a persistent buffer
                sd["text_model.embeddings.position_ids"] = _meta((1, 77), torch.int64)
        out[comp] = sd
    return out


def single_file_tensors(family: str, models: dict) -> tuple[dict, int]:
    """(original-layout checkpoint with the published extras (meta), count of model tensors)."""
    dtype = torch.float32 if is_sd15(family) else torch.float16
    ck = {}
    ck.update(sc.unet_to_ldm(meta_state_dict(models["unet"], dtype), models["unet"].config))
    ck.update(sc.vae_to_ldm(meta_state_dict(models["vae"], dtype), models["vae"].config))
    if is_sd15(family):
        ck.update(sc.clip_to_ldm(meta_state_dict(models["text_encoder"], dtype), "cond_stage_model.transformer."))
        n_model = len(ck)
        for name in sc.ldm_ddpm_schedule():
            ck[name] = _meta((1000,), torch.float32)
        ck["cond_stage_model.transformer.text_model.embeddings.position_ids"] = _meta((1, 77), torch.int64)
        ck["model_ema.decay"] = _meta((), torch.float32)
        ck["model_ema.num_updates"] = _meta((), torch.int32)
        return ck, n_model
    if "text_encoder" in models:  # base and inpainting: CLIP-L at embedders.0, OpenCLIP at embedders.1
        ck.update(sc.clip_to_ldm(meta_state_dict(models["text_encoder"], dtype), "conditioner.embedders.0.transformer."))
        openclip = "conditioner.embedders.1.model."
    else:  # refiner: OpenCLIP alone, at embedders.0
        openclip = "conditioner.embedders.0.model."
    ck.update(sc.openclip_to_ldm(meta_state_dict(models["text_encoder_2"], dtype), openclip))
    n_model = len(ck)
    if "text_encoder" in models:
        ck["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = _meta((1, 77), torch.int64)
    ck[openclip + "logit_scale"] = _meta((), torch.float16)
    return ck, n_model


def validate_single_file(family: str, ck: dict, models: dict) -> None:
    """diffusers' own conversion of the single-file names gives back every diffusers tensor."""
    dtype = torch.float32 if is_sd15(family) else torch.float16
    exp = {c: meta_state_dict(m, dtype) for c, m in models.items()}
    no_values = dict(compare_values=False)
    sc.check_roundtrip(ck, "unet", exp["unet"], config=models["unet"].config, **no_values)
    sc.check_roundtrip(ck, "vae", exp["vae"], config=models["vae"].config, **no_values)
    if "text_encoder" in exp:
        sc.check_roundtrip(ck, "clip", sc.clip_with_text_model_prefix(exp["text_encoder"]),
                           ignore=("text_model.embeddings.position_ids",), **no_values)
    if "text_encoder_2" in exp:
        prefix = "conditioner.embedders.1.model." if "text_encoder" in exp else "conditioner.embedders.0.model."
        sc.check_roundtrip(ck, "openclip", exp["text_encoder_2"], prefix=prefix, **no_values)


# ----------------------------------------------------------------------------------------------
# Size checks against the published files
# ----------------------------------------------------------------------------------------------


def name_order(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: e["name"])


def layout_order(family: str, entries: list[dict]) -> list[dict]:
    """Data order of the published files: by name in the 2022 SD 1.5 repositories, by dtype then
    name in everything written since (see the header)."""
    return name_order(entries) if is_sd15(family) else sc.file_order(entries)


def check_published_size(family: str, path: str, entries: list[dict]) -> str:
    key = (family, path)
    if key not in PUBLISHED_SIZES:
        return "no published size"
    size, kind = PUBLISHED_SIZES[key]
    if kind == "modern":
        ours = sc.file_size(sc.file_order(entries), {"format": "pt"}, pad=True)
        assert ours == size, f"{family} {path}: {ours} bytes, published {size}"
        return "published size matched exactly"
    ours = sc.file_size(name_order(entries), {"format": "pt"}, pad=False)
    assert abs(ours - size) <= TOLERANCE, f"{family} {path}: {ours} bytes, published {size}"
    return f"published size matched within {ours - size:+d} bytes"


def check_single_file_size(family: str, entries: list[dict]) -> str:
    if family == "sd15":
        header = sc.header_bytes(entries, {"format": "pt"}, pad=False)
        size = sc.file_size(entries, {"format": "pt"}, pad=False)
        assert len(header) == SD15_SINGLE_HEADER_LENGTH, len(header)
        assert size == SD15_SINGLE_SIZE, size
        return "published header length and size matched exactly"
    if family in SGM_SINGLE_SIZES:
        room = SGM_SINGLE_SIZES[family] - sc.file_size(entries, None, pad=False)
        assert 0 < room < 64 * 1024, room
        return f"published size leaves {room} bytes of metadata"
    return "no published size"


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def dumps(manifest: dict) -> str:
    """Compact JSON, one tensor per line."""
    def c(x):
        return json.dumps(x, separators=(",", ":"), sort_keys=False)

    files = []
    for f in manifest["files"]:
        tensors = ",\n".join(c(t) for t in f["tensors"])
        files.append('{"path":%s,"tensors":[\n%s]}' % (c(f["path"]), tensors))
    return ('{"family":%s,"format":%s,"files":[\n%s],\n"configs":%s,\n"parameters":%s}\n'
            % (c(manifest["family"]), c(manifest["format"]), ",\n".join(files),
               c(manifest["configs"]), c(manifest["parameters"])))


def write(manifest: dict) -> Path:
    path = OUT / f"{manifest['family']}.{manifest['format']}.json"
    text = dumps(manifest)
    assert json.loads(text) == manifest
    path.write_text(text)
    return path


def make(family: str) -> list[str]:
    models, cfgs = build(family)
    parameters = {c: sum(p.numel() for p in m.parameters()) for c, m in models.items()}
    assert parameters == PARAMETERS[family], f"{family}: {parameters} != {PARAMETERS[family]}"
    report = []

    # diffusers layout
    files = []
    for comp, sd in diffusers_tensors(family, models).items():
        path = DIFFUSERS_FILE[comp]
        entries = layout_order(family, sc.entries_of(sd))
        files.append({"path": path, "tensors": entries})
        report.append(f"  {path}: {len(entries)} tensors, {check_published_size(family, path, entries)}")
    configs = {CONFIG_FILE[k]: v for k, v in cfgs.items()}
    write({"family": family, "format": "diffusers", "files": files, "configs": configs, "parameters": parameters})

    # single file
    ck, n_model = single_file_tensors(family, models)
    validate_single_file(family, ck, models)
    want_model, want_total = SINGLE_FILE_COUNTS[family]
    assert (n_model, len(ck)) == (want_model, want_total), (family, n_model, len(ck))
    entries = layout_order(family, sc.entries_of(ck))
    by_name = {e["name"]: e for e in entries}
    for name, dtype, shape in SPOT_CHECKS[family]:
        assert by_name[name] == {"name": name, "dtype": dtype, "shape": shape}, (name, by_name.get(name))
    path = SINGLE_FILE[family]
    write({"family": family, "format": "single_file", "files": [{"path": path, "tensors": entries}],
           "configs": {}, "parameters": parameters})
    report.append(f"  {path}: {len(entries)} tensors ({n_model} model + {len(ck) - n_model} extra), "
                  f"{check_single_file_size(family, entries)}")
    return report


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for family in FAMILIES:
        lines = make(family)
        print(f"{family}: parameters {PARAMETERS[family]}")
        print("\n".join(lines))
    total = sum(p.stat().st_size for p in OUT.glob("*.json"))
    print(f"fixtures/manifests: {total / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()

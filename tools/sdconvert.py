"""Diffusers -> original (LDM / SGM) tensor names for SD 1.5 and SDXL, and safetensors helpers.

Used by `make_tiny_models.py` and `make_key_manifests.py`; not a script of its own.

The wheel of diffusers only converts original -> diffusers
(`diffusers/loaders/single_file_utils.py`), so this module is the other direction, written from
reading that file and the original model code (CompVis `ldm` for SD 1.x, Stability's
`generative-models` (`sgm`) for SDXL, `open_clip` for OpenCLIP). Both scripts check every result
against diffusers' own original -> diffusers functions (`check_roundtrip`).

Every function takes a state dict (name -> tensor; meta tensors work) and returns a new dict in
the original layout. Tensor values are only reshaped, transposed or concatenated, never changed.

Name maps, diffusers -> original (n = layers_per_block, L = number of levels):
  UNet  conv_in                      -> input_blocks.0.0
        time_embedding.linear_{1,2}  -> time_embed.{0,2}
        add_embedding.linear_{1,2}   -> label_emb.0.{0,2}           (SDXL's "text_time" embedding)
        down_blocks.i.resnets.j      -> input_blocks.{(n+1)i+j+1}.0  (resnet inner names renamed)
        down_blocks.i.attentions.j   -> input_blocks.{(n+1)i+j+1}.1  (inner names identical)
        down_blocks.i.downsamplers.0.conv -> input_blocks.{(n+1)(i+1)}.0.op
        mid_block.{resnets.0, attentions.0, resnets.1} -> middle_block.{0,1,2}
        up_blocks.i.resnets.j        -> output_blocks.{(n+1)i+j}.0
        up_blocks.i.attentions.j     -> output_blocks.{(n+1)i+j}.1
        up_blocks.i.upsamplers.0.conv -> output_blocks.{(n+1)i+n}.{2 if the level has attention else 1}.conv
        conv_norm_out / conv_out     -> out.0 / out.2
        resnet: norm1 in_layers.0, conv1 in_layers.2, time_emb_proj emb_layers.1,
                norm2 out_layers.0, conv2 out_layers.3, conv_shortcut skip_connection
  VAE   encoder.down_blocks.i.resnets.j -> encoder.down.i.block.j; downsamplers.0.conv -> down.i.downsample.conv
        decoder.up_blocks.i.resnets.j  -> decoder.up.{L-1-i}.block.j (numbered in reverse);
        upsamplers.0.conv -> up.{L-1-i}.upsample.conv
        mid_block.resnets.k -> mid.block_{k+1}; mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}
        -> mid.attn_1.{norm,q,k,v,proj_out}, the four linears as 1x1 convs [C, C, 1, 1]
        conv_norm_out -> norm_out; conv_shortcut -> nin_shortcut
  CLIP-L (transformers)  prefix + "text_model." + name (transformers 5 drops "text_model." when saving)
  OpenCLIP (bigG)  text_model.embeddings.token_embedding.weight -> token_embedding.weight
        text_model.embeddings.position_embedding.weight -> positional_embedding
        text_model.encoder.layers.i.self_attn.{q,k,v}_proj -> transformer.resblocks.i.attn.in_proj_{weight,bias}
        (q, k, v concatenated along dim 0), self_attn.out_proj -> attn.out_proj,
        layer_norm{1,2} -> ln_{1,2}, mlp.fc{1,2} -> mlp.c_{fc,proj},
        text_model.final_layer_norm -> ln_final, text_projection.weight -> text_projection (transposed)
"""

from __future__ import annotations

import json
import re
import struct

import torch

# --------------------------------------------------------------------------------------------
# UNet
# --------------------------------------------------------------------------------------------

_RESNET_RENAMES = [
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
]

_UNET_TOP = {
    "conv_in.": "input_blocks.0.0.",
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}


def _rename_resnet(rest: str) -> str:
    for old, new in _RESNET_RENAMES:
        if rest.startswith(old):
            return new + rest[len(old):]
    raise ValueError(f"unknown resnet tensor {rest!r}")


def unet_name_to_ldm(name: str, config: dict) -> str:
    """One diffusers UNet2DConditionModel tensor name -> its `model.diffusion_model.` suffix."""
    n = config["layers_per_block"]
    if isinstance(n, (list, tuple)):
        raise ValueError("per-level layers_per_block is not an SD/SDXL layout")
    for old, new in _UNET_TOP.items():
        if name.startswith(old):
            return new + name[len(old):]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", name)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = (n + 1) * i + j + 1
        if kind == "resnets":
            return f"input_blocks.{block}.0.{_rename_resnet(rest)}"
        return f"input_blocks.{block}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", name)
    if m:
        return f"input_blocks.{(n + 1) * (int(m[1]) + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", name)
    if m:
        kind, k, rest = m[1], int(m[2]), m[3]
        if kind == "resnets":
            return f"middle_block.{2 * k}.{_rename_resnet(rest)}"
        return f"middle_block.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", name)
    if m:
        i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        block = (n + 1) * i + j
        if kind == "resnets":
            return f"output_blocks.{block}.0.{_rename_resnet(rest)}"
        return f"output_blocks.{block}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", name)
    if m:
        i = int(m[1])
        has_attention = config["up_block_types"][i].startswith("CrossAttn")
        return f"output_blocks.{(n + 1) * i + n}.{2 if has_attention else 1}.conv.{m[2]}"
    raise ValueError(f"unknown UNet tensor {name!r}")


def unet_to_ldm(state_dict: dict, config: dict, prefix: str = "model.diffusion_model.") -> dict:
    """Diffusers UNet state dict -> original names (tensors unchanged)."""
    return {prefix + unet_name_to_ldm(k, config): v for k, v in state_dict.items()}


# --------------------------------------------------------------------------------------------
# VAE
# --------------------------------------------------------------------------------------------

_VAE_ATTN = {"group_norm.": "norm.", "to_q.": "q.", "to_k.": "k.", "to_v.": "v.", "to_out.0.": "proj_out."}


def vae_name_to_ldm(name: str, num_levels: int) -> str:
    """One diffusers AutoencoderKL tensor name -> its `first_stage_model.` suffix."""
    for side in ("encoder.", "decoder."):
        if name.startswith(side):
            rest = name[len(side):]
            break
    else:
        return name  # quant_conv, post_quant_conv
    rest = rest.replace("conv_norm_out.", "norm_out.")
    m = re.match(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        rest = f"down.{m[1]}.block.{m[2]}.{m[3]}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", rest)
    if m:
        rest = f"down.{m[1]}.downsample.conv.{m[2]}"
    m = re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        rest = f"up.{num_levels - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", rest)
    if m:
        rest = f"up.{num_levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if m:
        rest = f"mid.block_{int(m[1]) + 1}.{m[2]}"
    m = re.match(r"mid_block\.attentions\.0\.(.+)", rest)
    if m:
        inner = m[1]
        for old, new in _VAE_ATTN.items():
            if inner.startswith(old):
                inner = new + inner[len(old):]
                break
        else:
            raise ValueError(f"unknown VAE attention tensor {name!r}")
        rest = f"mid.attn_1.{inner}"
    rest = rest.replace(".conv_shortcut.", ".nin_shortcut.")
    return side + rest


def vae_to_ldm(state_dict: dict, config: dict, prefix: str = "first_stage_model.") -> dict:
    """Diffusers VAE state dict -> original names; mid attention linears become 1x1 convs."""
    levels = len(config["block_out_channels"])
    out = {}
    for k, v in state_dict.items():
        name = vae_name_to_ldm(k, levels)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v.reshape(*v.shape, 1, 1)  # [C, C] -> [C, C, 1, 1]
        out[prefix + name] = v
    return out


# --------------------------------------------------------------------------------------------
# Text encoders
# --------------------------------------------------------------------------------------------


def clip_with_text_model_prefix(state_dict: dict) -> dict:
    """transformers 5 CLIPTextModel names (`embeddings...`) -> the published layout
    (`text_model.embeddings...`). Names already in that layout, and CLIPTextModelWithProjection's
    `text_projection.weight`, are kept."""
    inner = ("embeddings.", "encoder.", "final_layer_norm.")
    return {"text_model." + k if k.startswith(inner) else k: v for k, v in state_dict.items()}


def clip_to_ldm(state_dict: dict, prefix: str) -> dict:
    """CLIP-L stays in Hugging Face names under a prefix (`cond_stage_model.transformer.` or
    `conditioner.embedders.0.transformer.`)."""
    return {prefix + k: v for k, v in clip_with_text_model_prefix(state_dict).items()}


_OPENCLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPENCLIP_LAYER = {
    "self_attn.out_proj.": "attn.out_proj.",
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
}


def openclip_to_ldm(state_dict: dict, prefix: str) -> dict:
    """CLIPTextModelWithProjection (bigG as diffusers stores it) -> OpenCLIP names under `prefix`
    (`conditioner.embedders.1.model.` for SDXL base, `conditioner.embedders.0.model.` for the refiner)."""
    out = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for k, v in state_dict.items():
        if k in _OPENCLIP_TOP:
            out[prefix + _OPENCLIP_TOP[k]] = v
            continue
        if k == "text_projection.weight":
            out[prefix + "text_projection"] = v.t().contiguous()  # Linear [out, in] -> OpenCLIP x @ P, P [in, out]
            continue
        m = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.+)", k)
        if not m:
            raise ValueError(f"unknown OpenCLIP tensor {k!r}")
        layer, rest = int(m[1]), m[2]
        mq = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
        if mq:
            qkv.setdefault((layer, mq[2]), {})[mq[1]] = v
            continue
        for old, new in _OPENCLIP_LAYER.items():
            if rest.startswith(old):
                out[f"{prefix}transformer.resblocks.{layer}.{new}{rest[len(old):]}"] = v
                break
        else:
            raise ValueError(f"unknown OpenCLIP tensor {k!r}")
    for (layer, kind), parts in sorted(qkv.items()):
        fused = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)  # [3*D, D] or [3*D]
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = fused
    return out


# --------------------------------------------------------------------------------------------
# Extra (non-parameter) tensors that the published single files carry
# --------------------------------------------------------------------------------------------


def ldm_ddpm_schedule(linear_start: float = 0.00085, linear_end: float = 0.012, steps: int = 1000) -> dict:
    """The 12 persistent buffers of ldm's `DDPM.register_schedule` (v_posterior 0), in float32
    as ldm stores them: computed in float64, then `torch.tensor(..., dtype=torch.float32)`."""
    betas = torch.linspace(linear_start**0.5, linear_end**0.5, steps, dtype=torch.float64) ** 2
    alphas = 1.0 - betas
    ac = torch.cumprod(alphas, dim=0)
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    posterior_variance = betas * (1.0 - ac_prev) / (1.0 - ac)
    bufs = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": (1.0 / ac).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / ac - 1).sqrt(),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": posterior_variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * alphas.sqrt() / (1.0 - ac),
    }
    return {k: v.to(torch.float32) for k, v in bufs.items()}


def clip_position_ids(n: int = 77) -> torch.Tensor:
    """transformers' CLIP `embeddings.position_ids` buffer (persistent before transformers 4.31): I64 [1, n]."""
    return torch.arange(n, dtype=torch.int64).unsqueeze(0)


def openclip_logit_scale() -> torch.Tensor:
    """OpenCLIP's `logit_scale` parameter, ln(1/0.07) at init, trained to ln(100); F16 scalar []."""
    return torch.tensor(4.60517, dtype=torch.float16)


# --------------------------------------------------------------------------------------------
# safetensors: dtype names, file order, header bytes
# --------------------------------------------------------------------------------------------

DTYPE_NAME = {
    torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}
DTYPE_BYTES = {"F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
# The safetensors library writes tensors sorted by its Dtype enum, highest first, then by name
# (checked against safetensors 0.8 in `check_safetensors_order`).
_DTYPE_RANK = {d: i for i, d in enumerate(["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32",
                                            "F32", "F64", "I64", "U64"])}


def file_order(entries: list[dict]) -> list[dict]:
    """Entries ({"name", "dtype", "shape"}) in the order the safetensors library lays them out."""
    return sorted(entries, key=lambda e: (-_DTYPE_RANK[e["dtype"]], e["name"]))


def nbytes(entry: dict) -> int:
    count = 1
    for d in entry["shape"]:
        count *= d
    return count * DTYPE_BYTES[entry["dtype"]]


def header_bytes(entries: list[dict], metadata: dict | None, pad: bool = True) -> bytes:
    """The JSON header the safetensors library writes for `entries` (already in file order)."""
    head = {}
    if metadata is not None:
        head["__metadata__"] = metadata
    offset = 0
    for e in entries:
        size = nbytes(e)
        head[e["name"]] = {"dtype": e["dtype"], "shape": list(e["shape"]), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(head, separators=(",", ":")).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return raw


def file_size(entries: list[dict], metadata: dict | None, pad: bool = True) -> int:
    return 8 + len(header_bytes(entries, metadata, pad)) + sum(nbytes(e) for e in entries)


def read_header(path) -> tuple[dict, list[dict]]:
    """(metadata, entries in file order) of a safetensors file."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
    meta = head.pop("__metadata__", None)
    items = sorted(head.items(), key=lambda kv: kv[1]["data_offsets"][0])
    return meta, [{"name": k, "dtype": v["dtype"], "shape": v["shape"]} for k, v in items]


def entries_of(state_dict: dict) -> list[dict]:
    return [{"name": k, "dtype": DTYPE_NAME[v.dtype], "shape": list(v.shape)} for k, v in state_dict.items()]


def check_safetensors_order(tmp_path) -> None:
    """Assert that `file_order` and `header_bytes` reproduce what the installed safetensors writes."""
    import safetensors.torch

    sd = {
        "b": torch.zeros(3, dtype=torch.float16), "a": torch.zeros(2, dtype=torch.float16),
        "z": torch.zeros(1, 77, dtype=torch.int64), "c": torch.zeros(2, dtype=torch.float32),
        "y": torch.zeros((), dtype=torch.int32), "x": torch.zeros(2, dtype=torch.bfloat16),
    }
    safetensors.torch.save_file(sd, str(tmp_path), metadata={"format": "pt"})
    with open(tmp_path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        written = f.read(n)
    ours = header_bytes(file_order(entries_of(sd)), {"format": "pt"})
    assert written == ours, f"safetensors layout changed:\n{written!r}\n{ours!r}"


# --------------------------------------------------------------------------------------------
# Independent check with diffusers' own original -> diffusers conversion
# --------------------------------------------------------------------------------------------


class _ConfigStub:
    """What `convert_open_clip_checkpoint` reads off its `text_model` argument."""

    def __init__(self, hidden_size: int):
        self.config = type("Cfg", (), {"hidden_size": hidden_size})()


def diffusers_view(ckpt: dict, kind: str, config: dict | None = None, prefix: str = "") -> dict:
    """Convert an original-layout checkpoint back with diffusers' `single_file_utils` functions.

    kind: "unet" | "vae" | "clip" | "openclip". Returns diffusers names (text encoders with the
    `text_model.` prefix, as published files have them)."""
    from diffusers.loaders import single_file_utils as sfu

    if kind == "unet":
        return sfu.convert_ldm_unet_checkpoint(ckpt, dict(config))
    if kind == "vae":
        return sfu.convert_ldm_vae_checkpoint(ckpt, dict(config))
    if kind == "clip":
        return sfu.convert_ldm_clip_checkpoint(ckpt)
    if kind == "openclip":
        hidden = ckpt[prefix + "positional_embedding"].shape[-1]
        return sfu.convert_open_clip_checkpoint(_ConfigStub(hidden), ckpt, prefix=prefix)
    raise ValueError(kind)


def check_roundtrip(ckpt: dict, kind: str, expected: dict, config: dict | None = None, prefix: str = "",
                    ignore: tuple[str, ...] = (), compare_values: bool = True) -> int:
    """Assert that diffusers' conversion of `ckpt` gives exactly `expected` (names, shapes, dtypes,
    and values unless `compare_values` is False, e.g. for meta tensors). Returns the tensor count."""
    got = {k: v for k, v in diffusers_view(ckpt, kind, config, prefix).items() if k not in ignore}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, f"{kind}: missing {missing[:5]} extra {extra[:5]}"
    for k, want in expected.items():
        have = got[k]
        assert have is not None, f"{kind}: {k} converted to None"
        assert tuple(have.shape) == tuple(want.shape), f"{kind}: {k} shape {tuple(have.shape)} != {tuple(want.shape)}"
        assert have.dtype == want.dtype, f"{kind}: {k} dtype {have.dtype} != {want.dtype}"
        if compare_values:
            assert torch.equal(have, want), f"{kind}: {k} values differ"
    return len(expected)

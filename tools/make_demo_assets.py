"""kiln's built-in demo model description and the example requests -> pipeline/assets/demo_sdxl/, examples/.

What it makes (byte for byte the same on every run):
  pipeline/assets/demo_sdxl/**.json        the demo's model_index.json, scheduler config and four
                                           component config.json files, as diffusers/transformers
                                           save_pretrained writes them for the models built from
                                           DEMO_UNET / DEMO_VAE / the text encoder configs below.
  pipeline/assets/demo_sdxl/manifest.txt   every tensor of those models' saved weight files, one
                                           `component.name d0,d1,...` per line (all F16), sorted;
                                           kiln's `demo` module draws the weights for exactly these.
  fixtures/demo/weights.json               for each weight file of the demo folder: its tensors'
                                           names and shapes as diffusers saves them, and the length
                                           and FNV-1a 64 hash of its data region as torch draws it
                                           (see "Weights" below); kiln's must equal both.
  examples/requests.jsonl                  OctoAI-style requests for the demo model (SDXL sizes),
                                           one of them img2img with a small PNG made here: a
                                           deterministic 32x32 RGB gradient, base64-encoded.

The demo model is SDXL-shaped but built to be cheap at SDXL's one-megapixel sizes: a UNet with
3 levels 8/16/32 wide, one resnet per block, attention (linear projections, depth 1/1/2 by level,
the mid block 2) only at the deepest level (DownBlock2D, DownBlock2D, CrossAttnDownBlock2D and the
mirror image going up; SDXL attends at the two deeper levels) and the `text_time` added embedding
(pooled text embedding + 6 time ids of 8 features); two text encoders CLIP-L-like (16 wide,
quick_gelu) and OpenCLIP-G-like (32 wide, gelu, projection) with the real 49408-token vocabulary
and 77 positions; a 4-level VAE 4/4/8/8 wide with one resnet per block and no mid-block attention
(`mid_block_add_attention: false`), 4 latent channels, scaling factor 0.13025, force_upcast.
Norms use 4 groups. It is a diffusers folder, not a single file, because a single file carries no
config and kiln (like diffusers) would size it with the family's published 32 norm groups.

Weights (the reference for kiln's `demo` module; the scheme is kiln's own): tensor `name` of
component `c` is drawn from torch.Generator().manual_seed(s), s = (h ^ (h >> 32)) mod 2^32 with
h = FNV-1a-64("kiln-demo-sdxl-v2/c.name"), as torch.randn(max(numel, 16))[:numel] (16 at least so
that every value comes from torch's vectorised Box-Muller kernel, the same on every x86 build),
then scaled in float32 like make_tiny_models.py (biases 0.1 N, norm scales 1 + 0.1 N, token and
position tables 0.5 N, other weights N / sqrt(fan_in)) and rounded to float16.

Checks run on every invocation: diffusers' StableDiffusionXLPipeline loads the folder with these
weights and renders 2 steps at 256x256 to a finite, non-flat, unsaturated image; each request is
validated against the OpenAPI spec (shared/spec/octoai-imagegen-openapi.json,
ImageGenerationRequest: known field, type, enum, bounds, max length) and its (width, height)
against the SDXL sizes the spec lists; the PNG decodes to 32x32 RGB.

Run:   /work/venv/bin/python tools/make_demo_assets.py   (~15 s)
Needs: torch 2.15.0 (x86-64 with AVX2 or AVX-512, as make_rng_fixtures.py), diffusers 0.42.1,
       transformers 5.23.0, numpy, Pillow, and what make_tiny_models.py needs (its save_diffusers
       and tokenizer files are reused).
"""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_tiny_models as tiny  # noqa: E402  (also sets the offline/quiet environment)
from diffusers import AutoencoderKL, StableDiffusionXLPipeline, UNet2DConditionModel  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection  # noqa: E402
import safetensors.torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "pipeline" / "assets" / "demo_sdxl"
EXAMPLES = ROOT / "examples" / "requests.jsonl"
WEIGHTS_REF = ROOT / "fixtures" / "demo" / "weights.json"
VERSION = "kiln-demo-sdxl-v2"
# The spec lives in shared/ at the checkout's root (next to it for a git worktree).
SPEC = next((p for p in (ROOT / "shared", ROOT.parent / "shared") if p.is_dir()), ROOT / "shared") / "spec" / \
    "octoai-imagegen-openapi.json"

CLIP_L = tiny.TINY_SDXL_CLIP_L  # 16 wide, 4 layers, quick_gelu, 49408 tokens, 77 positions
BIG_G = tiny.TINY_BIGG  # 32 wide, 4 layers, gelu, projection 32
_TIME_DIM = 8  # SDXL: 256
DEMO_UNET = dict(
    sample_size=128, in_channels=4, out_channels=4,  # SDXL: 128 (1024-pixel images)
    down_block_types=["DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"],
    up_block_types=["CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    mid_block_type="UNetMidBlock2DCrossAttn",
    block_out_channels=[8, 16, 32], layers_per_block=1, norm_num_groups=4,  # SDXL: [320, 640, 1280], 2, 32
    transformer_layers_per_block=[1, 1, 2],  # SDXL: [1, 2, 10]; the mid block takes the last
    attention_head_dim=[1, 2, 2],  # number of heads per level (SDXL: [5, 10, 20]), head dim 16 where it attends
    cross_attention_dim=CLIP_L["hidden_size"] + BIG_G["hidden_size"],  # SDXL: 768 + 1280
    use_linear_projection=True,
    addition_embed_type="text_time", addition_embed_type_num_heads=64, addition_time_embed_dim=_TIME_DIM,
    projection_class_embeddings_input_dim=BIG_G["projection_dim"] + 6 * _TIME_DIM,  # SDXL: 1280 + 6 * 256
    flip_sin_to_cos=True, freq_shift=0, act_fn="silu", norm_eps=1e-5,
)
DEMO_VAE = dict(
    sample_size=1024, in_channels=3, out_channels=3, latent_channels=4,  # SDXL: 1024
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[4, 4, 8, 8], layers_per_block=1, norm_num_groups=4,  # SDXL: [128, 256, 512, 512], 2, 32
    mid_block_add_attention=False,  # SDXL: true (attention over every latent pixel)
    act_fn="silu", scaling_factor=0.13025, force_upcast=True,
)

WEIGHT_FILES = {
    "unet": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
    "text_encoder_2": "model.safetensors",
}
CONFIGS = [
    "model_index.json",
    "scheduler/scheduler_config.json",
    "unet/config.json",
    "vae/config.json",
    "text_encoder/config.json",
    "text_encoder_2/config.json",
]


def read_header(path: Path) -> dict:
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def save_diffusers_folder(folder: Path) -> None:
    """The demo's models as diffusers saves them (weights: torch's default init, replaced later)."""
    torch.manual_seed(0)
    models = {
        "unet": UNet2DConditionModel(**DEMO_UNET),
        "vae": AutoencoderKL(**DEMO_VAE),
        "text_encoder": CLIPTextModel(CLIPTextConfig(**CLIP_L)),
        "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**BIG_G)),
    }
    models = {c: m.to(torch.float16).eval() for c, m in models.items()}
    tiny.save_diffusers("sdxl", models, folder)


def tensors_of(folder: Path) -> dict[str, dict[str, list[int]]]:
    """Per weight file: tensor name -> shape, sorted by name (all F16)."""
    out = {}
    for component, file in WEIGHT_FILES.items():
        header = read_header(folder / component / file)
        for name, entry in header.items():
            assert entry["dtype"] == "F16", (component, name, entry["dtype"])
            assert entry["shape"], (component, name)
        out[f"{component}/{file}"] = {name: header[name]["shape"] for name in sorted(header)}
    assert not any("mid_block.attentions" in n for n in out["vae/diffusion_pytorch_model.safetensors"])
    return out


def write_manifest(tensors: dict) -> int:
    lines = ["# Tensors of kiln's demo model (see tools/make_demo_assets.py); made by that script"]
    for component, file in WEIGHT_FILES.items():
        for name, shape in tensors[f"{component}/{file}"].items():
            lines.append(f"{component}.{name} {','.join(str(d) for d in shape)}")
    ASSETS.mkdir(parents=True, exist_ok=True)
    (ASSETS / "manifest.txt").write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def demo_tensor(component: str, name: str, shape: list[int]) -> np.ndarray:
    """One tensor of the demo model, float16, as described in the header."""
    h = fnv1a64(f"{VERSION}/{component}.{name}".encode())
    g = torch.Generator().manual_seed((h ^ (h >> 32)) & 0xFFFFFFFF)
    numel = int(np.prod(shape))
    z = torch.randn(max(numel, 16), generator=g, dtype=torch.float32)[:numel].numpy()
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "bias" or name.endswith("_bias"):
        scale, shift = np.float32(0.1), np.float32(0.0)
    elif len(shape) == 1:
        scale, shift = np.float32(0.1), np.float32(1.0)
    elif "embedding" in name and len(shape) == 2 and "linear" not in name:
        scale, shift = np.float32(0.5), np.float32(0.0)
    else:
        fan_in = int(np.prod(shape[1:]))
        scale, shift = np.float32(1.0) / np.sqrt(np.float32(fan_in)), np.float32(0.0)
    return ((z * scale).astype(np.float32) + shift).astype(np.float32).astype(np.float16)


def write_weights_reference(tensors: dict) -> None:
    """Per weight file: the tensors (name -> shape) and its data region (tensors back to back in
    name order) as torch draws it."""
    ref = {}
    for component, file in WEIGHT_FILES.items():
        shapes = tensors[f"{component}/{file}"]
        data = b"".join(demo_tensor(component, name, shape).astype("<f2").tobytes()
                        for name, shape in shapes.items())
        ref[f"{component}/{file}"] = {"data_bytes": len(data), "data_fnv1a64": f"{fnv1a64(data):016x}",
                                      "tensors": shapes}
    WEIGHTS_REF.parent.mkdir(parents=True, exist_ok=True)
    WEIGHTS_REF.write_text(json.dumps(ref, indent=1, sort_keys=True) + "\n")


def copy_configs(folder: Path) -> None:
    for rel in CONFIGS:
        dst = ASSETS / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes((folder / rel).read_bytes())


def check_diffusers_renders(folder: Path, tensors: dict) -> dict:
    """Puts the demo weights into the saved folder, loads it with diffusers' SDXL pipeline (which
    checks every name and shape against the configs) and renders 2 guided steps at 256x256."""
    for component, file in WEIGHT_FILES.items():
        sd = {name: torch.from_numpy(demo_tensor(component, name, shape).reshape(shape))
              for name, shape in tensors[f"{component}/{file}"].items()}
        safetensors.torch.save_file(sd, folder / component / file, metadata={"format": "pt"})
    pipe = StableDiffusionXLPipeline.from_pretrained(folder, torch_dtype=torch.float32, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a lighthouse on a cliff at dusk", num_inference_steps=2, height=256, width=256,
                 output_type="np", generator=torch.Generator().manual_seed(0)).images[0]
    assert image.shape == (256, 256, 3) and bool(np.isfinite(image).all()), image.shape
    stats = {"std": float(image.std()), "saturated": float(((image <= 0.0) | (image >= 1.0)).mean())}
    assert stats["std"] > 0.02 and stats["saturated"] < 0.25, stats
    return stats


def gradient_png_b64() -> str:
    """A 32x32 RGB gradient (red left to right, green top to bottom, blue constant) as PNG."""
    img = Image.new("RGB", (32, 32))
    img.putdata([(x * 8, y * 8, 160) for y in range(32) for x in range(32)])
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# Steps are few on purpose: the demo model's weights are random, and even this narrow model
# works on SDXL's one-megapixel sizes: one guided UNet call (batch 2) costs ~0.55 CPU-seconds and
# one VAE decode ~1.2 on an x86 machine (pipeline/tests/demo_model.rs, `measure_demo_speed_at_1024`),
# one 2-step 1024x1024 request ~3 through `kiln render`, and this whole file (6 images) ~19.
def requests() -> list[dict]:
    return [
        {"id": "lighthouse", "prompt": "a lighthouse on a cliff at dusk, oil painting", "steps": 2,
         "seed": 1234},
        {"id": "fox", "prompt": "a (red fox:1.3) sleeping in [fresh] snow, photograph",
         "negative_prompt": "blurry, low quality", "style_preset": "photographic", "steps": 2,
         "cfg_scale": 6, "seed": 42},
        {"id": "robots", "prompt": "two small robots playing chess", "num_images": 2, "seed": 7,
         "steps": 2, "sampler": "K_EULER_ANCESTRAL", "width": 1152, "height": 896},
        {"prompt": "isometric city block, pastel colours", "prompt_2": "soft morning light", "steps": 2,
         "seed": 99, "sampler": "DPM_PLUS_PLUS_2M_KARRAS", "image_encoding": "png", "width": 832,
         "height": 1216},
        {"id": "repaint", "prompt": "a sunset over the sea, watercolor", "init_image": gradient_png_b64(),
         "strength": 0.5, "steps": 4, "seed": 5, "sampler": "K_EULER"},
    ]


def _resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _matches(spec: dict, schema: dict, value) -> str | None:
    """None when `value` fits `schema` (the subset of JSON schema the request model uses),
    otherwise why not."""
    schema = _resolve(spec, schema)
    if "anyOf" in schema:
        reasons = [_matches(spec, s, value) for s in schema["anyOf"]]
        return None if None in reasons else " / ".join(r for r in reasons if r)
    for sub in schema.get("allOf", []):
        if (reason := _matches(spec, sub, value)) is not None:
            return reason
    if "enum" in schema and value not in schema["enum"]:
        return f"{value!r} is not one of the enum"
    kind = schema.get("type")
    if kind is not None:
        ok = {
            "string": isinstance(value, str), "boolean": isinstance(value, bool), "null": value is None,
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "array": isinstance(value, list), "object": isinstance(value, dict),
        }[kind]
        if not ok:
            return f"{value!r} is not {kind}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{value} < {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{value} > {schema['maximum']}"
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return f"{value} <= {schema['exclusiveMinimum']}"
    if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
        return "too long"
    if isinstance(value, list) and "items" in schema:
        for item in value:
            if (reason := _matches(spec, schema["items"], item)) is not None:
                return reason
    return None


def check_requests(reqs: list[dict]) -> None:
    spec = json.loads(SPEC.read_text())
    model = spec["components"]["schemas"]["ImageGenerationRequest"]
    props = model["properties"]
    sizes_text = props["width"]["description"].split("SDXL=", 1)[1].split("]", 1)[0]
    sdxl_sizes = {tuple(int(v) for v in pair.split(",")) for pair in re.findall(r"\((\d+, \d+)\)", sizes_text)}
    assert (1024, 1024) in sdxl_sizes and len(sdxl_sizes) == 9, sdxl_sizes
    for i, req in enumerate(reqs, 1):
        for field in model.get("required", []):
            assert field in req, f"request {i}: missing {field}"
        for field, value in req.items():
            if field == "id":  # kiln's addition: a string naming the request
                assert isinstance(value, str), f"request {i}: id {value!r}"
                continue
            assert field in props, f"request {i}: unknown field {field}"
            reason = _matches(spec, props[field], value)
            assert reason is None, f"request {i}: {field}: {reason}"
        size = (req.get("width", 1024), req.get("height", 1024))
        assert size in sdxl_sizes, f"request {i}: {size} is not an SDXL size"
        seeds = req.get("seed", [])
        for seed in seeds if isinstance(seeds, list) else [seeds]:
            assert seed is None or 0 < seed < 2**32, f"request {i}: seed {seed}"
        if "init_image" in req:
            img = Image.open(io.BytesIO(base64.b64decode(req["init_image"], validate=True)))
            assert img.format == "PNG" and img.mode == "RGB" and img.size == (32, 32), (img.format, img.mode)


def write_examples() -> None:
    reqs = requests()
    check_requests(reqs)
    lines = [json.dumps(r, ensure_ascii=False) for r in reqs]
    EXAMPLES.write_text("\n".join(lines) + "\n")


def main() -> None:
    capability = torch.backends.cpu.get_cpu_capability()
    assert capability in ("AVX2", "AVX512"), f"torch's {capability} normal kernel differs from kiln's default"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "demo"
        save_diffusers_folder(folder)
        tensors = tensors_of(folder)
        n = write_manifest(tensors)
        copy_configs(folder)
        write_weights_reference(tensors)
        stats = check_diffusers_renders(folder, tensors)
    write_examples()
    print(f"{n} tensors -> {ASSETS.relative_to(ROOT)}/manifest.txt; configs written; diffusers renders "
          f"256x256 with pixel std {stats['std']:.3f}, {100 * stats['saturated']:.1f}% saturated; "
          f"{len(requests())} requests -> {EXAMPLES.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

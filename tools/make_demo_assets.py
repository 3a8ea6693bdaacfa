"""kiln's built-in demo model description and the example requests -> pipeline/assets/demo_sdxl/, examples/.

What it makes (byte for byte the same on every run):
  pipeline/assets/demo_sdxl/manifest.txt   every tensor of the tiny SDXL diffusers folder
                                           (fixtures/tiny/sdxl/), one `component.name d0,d1,...`
                                           per line (all F16), sorted; kiln's `demo` module draws
                                           the demo model's weights for exactly these tensors.
  pipeline/assets/demo_sdxl/**.json        that folder's model_index.json, scheduler config and
                                           the four component config.json files, verbatim.
  fixtures/demo/weights.json               for each weight file of the demo folder: the length and
                                           FNV-1a 64 hash of its data region as torch draws it
                                           (see "Weights" below), which kiln's must equal.
  examples/requests.jsonl                  OctoAI-style requests for the demo model (SDXL sizes),
                                           one of them img2img with a small PNG made here: a
                                           deterministic 32x32 RGB gradient, base64-encoded.

Why a folder and not a single file: a single file carries no config, and kiln (like diffusers)
then sizes it from the weights plus the family's published config, whose 32 norm groups do not
divide the tiny widths (16 / 8 channels). The folder's config.json files say 8 and 4 groups, so
the demo is the tiny fixture's topology exactly (3 UNet levels 16/32/32, VAE 8/8/16/16, CLIP
encoders 16 and 32 wide with the real 49408-token vocabulary and 77 positions).

Weights (the reference for kiln's `demo` module; the scheme is kiln's own): tensor `name` of
component `c` is drawn from torch.Generator().manual_seed(s), s = (h ^ (h >> 32)) mod 2^32 with
h = FNV-1a-64("kiln-demo-sdxl-v1/c.name"), as torch.randn(max(numel, 16))[:numel] (16 at least so
that every value comes from torch's vectorised Box-Muller kernel, the same on every x86 build),
then scaled in float32 like make_tiny_models.py (biases 0.1 N, norm scales 1 + 0.1 N, token and
position tables 0.5 N, other weights N / sqrt(fan_in)) and rounded to float16.

Check run on every invocation: each request is validated against the OpenAPI spec
(shared/spec/octoai-imagegen-openapi.json, ImageGenerationRequest: known field, type, enum,
bounds, max length) and its (width, height) against the SDXL sizes the spec lists; the PNG
decodes to 32x32 RGB.

Run:   /work/venv/bin/python tools/make_demo_assets.py   (after make_tiny_models.py; ~10 s)
Needs: torch 2.15.0 (x86-64 with AVX2 or AVX-512, as make_rng_fixtures.py), numpy, Pillow.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "fixtures" / "tiny" / "sdxl"
ASSETS = ROOT / "pipeline" / "assets" / "demo_sdxl"
EXAMPLES = ROOT / "examples" / "requests.jsonl"
WEIGHTS_REF = ROOT / "fixtures" / "demo" / "weights.json"
VERSION = "kiln-demo-sdxl-v1"
# The spec lives in shared/ at the checkout's root (next to it for a git worktree).
SPEC = next((p for p in (ROOT / "shared", ROOT.parent / "shared") if p.is_dir()), ROOT / "shared") / "spec" / \
    "octoai-imagegen-openapi.json"

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


def write_manifest() -> int:
    lines = ["# Tensors of kiln's demo model (tiny SDXL topology); made by tools/make_demo_assets.py"]
    count = 0
    for component, file in WEIGHT_FILES.items():
        header = read_header(TINY / component / file)
        for name in sorted(header):
            entry = header[name]
            assert entry["dtype"] == "F16", (component, name, entry["dtype"])
            assert entry["shape"], (component, name)
            lines.append(f"{component}.{name} {','.join(str(d) for d in entry['shape'])}")
            count += 1
    ASSETS.mkdir(parents=True, exist_ok=True)
    (ASSETS / "manifest.txt").write_text("\n".join(lines) + "\n")
    return count


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


def write_weights_reference() -> None:
    """The data region of each demo weight file (tensors back to back in manifest order)."""
    ref = {}
    for component, file in WEIGHT_FILES.items():
        header = read_header(TINY / component / file)
        data = b"".join(demo_tensor(component, name, header[name]["shape"]).astype("<f2").tobytes()
                        for name in sorted(header))
        ref[f"{component}/{file}"] = {"data_bytes": len(data), "data_fnv1a64": f"{fnv1a64(data):016x}"}
    WEIGHTS_REF.parent.mkdir(parents=True, exist_ok=True)
    WEIGHTS_REF.write_text(json.dumps(ref, indent=2, sort_keys=True) + "\n")


def copy_configs() -> None:
    for rel in CONFIGS:
        dst = ASSETS / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TINY / rel, dst)


def gradient_png_b64() -> str:
    """A 32x32 RGB gradient (red left to right, green top to bottom, blue constant) as PNG."""
    img = Image.new("RGB", (32, 32))
    img.putdata([(x * 8, y * 8, 160) for y in range(32) for x in range(32)])
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=9)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# Steps are few on purpose: the demo model's weights are random, and at SDXL's sizes (about one
# megapixel) one guided UNet call costs ~5.5 CPU-seconds and one VAE decode ~6.7 on a 2-core
# x86 machine (pipeline/tests/demo_model.rs, `measure_demo_speed_at_1024`).
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
    n = write_manifest()
    copy_configs()
    write_weights_reference()
    write_examples()
    print(f"{n} tensors -> {ASSETS.relative_to(ROOT)}/manifest.txt; configs copied; "
          f"{len(requests())} requests -> {EXAMPLES.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

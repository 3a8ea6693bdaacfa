"""torch.randn parity fixtures for kiln's seeded noise generator -> fixtures/parity/rng.safetensors.

What it makes: one safetensors file holding, for a list of cases, the values torch produces with

    g = torch.Generator("cpu").manual_seed(seed)
    torch.randn(shape, generator=g, dtype=torch.float32)     # repeated: one case = several draws
    torch.rand(shape, generator=g, dtype=torch.float32)      # a few cases mix in uniform draws

on the same generator, so the stream continuation between draws is recorded too (ancestral
samplers draw again and again). The cases cover the paths torch's CPU normal kernel takes:

  - numel >= 16, contiguous float: uniforms for the whole tensor, Box-Muller on each 16-value
    chunk; when numel % 16 != 0 the last 16 values are drawn again ([1,4,3,5], [17], ...);
  - numel < 16: per-element normal_distribution<double> with its cached second value, which
    survives into later draws ([1,1,1,3] then other draws);
  - seeds 0, 1, 42, 2**32 + 5 (only the low 32 bits seed mt19937), 2**63 - 1, 2**64 - 1.

Layout: the safetensors metadata entry "fixture" is JSON {"capability", "torch", "stride",
"cases"}; cases is a list of {"name", "seed", "draws": [{"op": "randn"|"rand", "shape": [...],
"key": tensor-name prefix, "numel": n, "full": bool}]}. For a draw with numel * 4 <= 16 KiB the
full flat output (torch order) is stored as `<key>`; bigger draws store `<key>.head` (first 1024
values), `<key>.tail` (last 1024), `<key>.stride` (every 97th value, starting at 0) and
`<key>.sum` (F64: the float64 sum of all values).

CPU dependence: "capability" records torch.backends.cpu.get_cpu_capability(). torch's 16-value
float Box-Muller is compiled per CPU: x86 AVX2 and AVX512 machines both run the AVX2 kernel
(avx_mathfun.h's Cephes log/sincos with fused multiply-adds; torch registers no AVX512 normal
kernel); the portable build (DEFAULT) uses libm and differs in the last bits of ~40% of the
values. kiln's default reproduces the x86 AVX2 kernel, so this script must run on an x86-64
machine with AVX2 or AVX512 (it refuses otherwise; made here on AVX512). ARM builds are not
covered.

Second file: fixtures/parity/rng_default_cpu.safetensors, same layout, a few single draws (seeds
0 and 42; [1,4,64,64], [1,4,3,5], [2,4,5,7]) from torch's portable kernel: the script reruns
itself in a child process with ATEN_CPU_CAPABILITY=default (libm logf/cosf/sinf), which kiln
reproduces as BoxMullerKernel::Portable on Linux/glibc.

Checks run on every invocation: torch's capability is AVX2/AVX512 (DEFAULT in the child), a
generator reseeded with the same seed replays the first draw exactly, and 2**32 + 5 gives the
same values as 5 (torch seeds mt19937 with the low 32 bits of the seed).

Run:   /work/venv/bin/python tools/make_rng_fixtures.py   (~5 s)
Needs: torch 2.15.0, safetensors (tools/requirements.txt).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "parity", "rng.safetensors")
OUT_DEFAULT = os.path.join(ROOT, "fixtures", "parity", "rng_default_cpu.safetensors")
CHILD_FLAG = "KILN_RNG_FIXTURE_DEFAULT_CHILD"

FULL_LIMIT_BYTES = 16 * 1024
EDGE = 1024
STRIDE = 97

SEEDS = [0, 1, 42, 2**32 + 5, 2**63 - 1, 2**64 - 1]

# Single draws per seed: SD1.5 512px, SDXL 1024px batch 2, tiny, odd sizes, the < 16 path.
SINGLE_SHAPES = [
    [1, 4, 64, 64],
    [2, 4, 128, 128],
    [1, 4, 8, 8],
    [1, 4, 3, 5],
    [1, 4, 1, 2],
    [1, 1, 1, 3],
]

# torch's portable (DEFAULT capability) kernel: fewer cases, it is the secondary target.
DEFAULT_SEEDS = [0, 42]
DEFAULT_SHAPES = [[1, 4, 64, 64], [1, 4, 3, 5], [2, 4, 5, 7]]

# Consecutive draws on one generator (name, seed, [(op, shape), ...]).
SEQUENCES = [
    ("ancestral_sd15", 42, [("randn", [1, 4, 64, 64])] + [("randn", [1, 4, 64, 64])] * 3),
    (
        "mixed_paths",
        7,
        [
            ("randn", [1, 1, 1, 3]),  # leaves a cached double normal
            ("randn", [1, 4, 3, 5]),  # float path: does not touch the cache
            ("randn", [1, 1, 1, 1]),  # takes the cached value
            ("randn", [1, 1, 1, 1]),  # fresh pair, caches again
            ("randn", [17]),
            ("randn", [15]),
            ("randn", [16]),
            ("randn", [1]),
            ("randn", [1, 4, 0, 8]),  # empty: draws nothing
            ("randn", [2, 4, 5, 7]),
        ],
    ),
    ("sdxl_768", 1234, [("randn", [1, 4, 128, 96]), ("randn", [1, 4, 128, 96])]),
    ("uniform", 3, [("rand", [1, 4, 8, 8]), ("randn", [1, 4, 8, 8]), ("rand", [5]), ("randn", [3])]),
]


def draw(op: str, shape: list[int], g: torch.Generator) -> torch.Tensor:
    if op == "randn":
        return torch.randn(shape, generator=g, dtype=torch.float32)
    return torch.rand(shape, generator=g, dtype=torch.float32)


def store(tensors: dict[str, torch.Tensor], key: str, values: torch.Tensor) -> bool:
    flat = values.reshape(-1).contiguous()
    if flat.numel() * 4 <= FULL_LIMIT_BYTES:
        tensors[key] = flat.clone()
        return True
    tensors[f"{key}.head"] = flat[:EDGE].clone()
    tensors[f"{key}.tail"] = flat[-EDGE:].clone()
    tensors[f"{key}.stride"] = flat[::STRIDE].clone()
    tensors[f"{key}.sum"] = flat.double().sum().reshape(1)
    return False


def shape_tag(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def record(plans) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Runs each plan on a fresh generator; returns the stored tensors and the case list."""
    tensors: dict[str, torch.Tensor] = {}
    cases = []
    for name, seed, ops in plans:
        g = torch.Generator("cpu").manual_seed(seed)
        draws = []
        for i, (op, shape) in enumerate(ops):
            values = draw(op, shape, g)
            assert torch.isfinite(values).all(), name
            key = f"{name}.{i}"
            full = store(tensors, key, values)
            draws.append({"op": op, "shape": shape, "key": key, "numel": values.numel(), "full": full})
        cases.append({"name": name, "seed": seed, "draws": draws})
    return tensors, cases


def write(path: str, tensors: dict[str, torch.Tensor], cases: list[dict]) -> None:
    # One metadata entry: safetensors writes several in no fixed order.
    info = {
        "capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "stride": STRIDE,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path, metadata={"fixture": json.dumps(info)})
    print(f"{path}: {len(cases)} cases, {len(tensors)} tensors, {os.path.getsize(path)} bytes, "
          f"capability {info['capability']}")


def main() -> None:
    if os.environ.get(CHILD_FLAG):
        # Child process started below with ATEN_CPU_CAPABILITY=default: torch's portable kernel.
        assert torch.backends.cpu.get_cpu_capability() == "DEFAULT"
        plans = [(f"seed{s}_{shape_tag(sh)}", s, [("randn", sh)]) for s in DEFAULT_SEEDS for sh in DEFAULT_SHAPES]
        write(OUT_DEFAULT, *record(plans))
        return

    capability = torch.backends.cpu.get_cpu_capability()
    assert capability in ("AVX2", "AVX512"), f"needs an x86 AVX2/AVX512 torch, got {capability}"
    plans = [(f"seed{s}_{shape_tag(sh)}", s, [("randn", sh)]) for s in SEEDS for sh in SINGLE_SHAPES]
    plans += SEQUENCES
    tensors, cases = record(plans)

    # Reseeding replays; only the low 32 bits of the seed reach mt19937.
    a = torch.randn([1, 4, 8, 8], generator=torch.Generator("cpu").manual_seed(5))
    b = torch.randn([1, 4, 8, 8], generator=torch.Generator("cpu").manual_seed(2**32 + 5))
    assert torch.equal(a, b)
    c = torch.randn([1, 4, 8, 8], generator=torch.Generator("cpu").manual_seed(5))
    assert torch.equal(a, c)
    write(OUT, tensors, cases)

    env = dict(os.environ, ATEN_CPU_CAPABILITY="default", **{CHILD_FLAG: "1"})
    subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, check=True)


if __name__ == "__main__":
    main()

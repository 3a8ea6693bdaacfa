"""Brownian-tree parity fixtures -> fixtures/parity/brownian.json, made with torchsde and numpy.

kiln reproduces torchsde's Brownian tree (pipeline/src/samplers/brownian/) for diffusers'
DPMSolverSDEScheduler (DPM_PLUS_PLUS_SDE_KARRAS). This script records what the real libraries
give, for pipeline/tests/brownian_parity.rs:

  seed_sequences  numpy.random.SeedSequence(entropy, spawn_key=key, pool_size=p): its pool and
                  generate_state(4), for entropies of one and two 32-bit words (0, small,
                  2**32 + 7, near 2**63) and spawn keys () / (0, 0) / (k, depth) incl. a key
                  past 2**32 (what torchsde seeds each tree node with: pool_size 24).
  randint         torch.randint(0, 2**63 - 1, [], generator=torch.Generator().manual_seed(seed))
                  (the tree entropy diffusers draws; the script checks torch.manual_seed(seed)
                  then the global draw gives the same) and torch.randint(0, 1000, [], ...) (the
                  one-word path).
  rounding        Python round(x, 6) of awkward values (exact binary ties, sigmas).
  trees           torchsde.BrownianInterval(t0, t1, size, entropy, tol=1e-6, pool_size=24,
                  halfway_tree=True) as diffusers' BatchedBrownianTree builds it, on float32
                  sigma ends from a real Karras schedule and on [0, 1]; a list of queries, each
                  answered on the same tree in the given order (scheduler-like descending steps,
                  random intervals in random order, the whole interval, ends outside the range,
                  a zero-length query), storing W(ta, tb) as float32 bit patterns. Shapes: [1, 4,
                  3, 5] (60 values: torch's 16-chunk path with a redrawn tail) and [2, 3] (6 values:
                  torch's double path).
  noise_sampler   diffusers' BrownianTreeNoiseSampler on a real DPMSolverSDEScheduler schedule
                  (SD 1.5 config, Karras, 6 steps): sigma_min/max as the scheduler takes them, and
                  for each call (sigma, sigma_next) as float32 bits and the normalised noise.

Floats are stored as their bit patterns (u32 of f32, u64 of f64) so the test compares exactly.

Run: /work/venv/bin/python tools/make_brownian_fixtures.py   (deterministic, a few seconds)
Needs: torch, torchsde 0.2.6, numpy, diffusers 0.42.1 (tools/requirements.txt).
"""

import json
import random
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torchsde
from diffusers import DPMSolverSDEScheduler
from diffusers.schedulers.scheduling_dpmsolver_sde import BrownianTreeNoiseSampler

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "parity" / "brownian.json"


def f32_bits(values):
    return [int(v) for v in np.asarray(values, dtype=np.float32).reshape(-1).view(np.uint32)]


def f64_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", float(x)))[0]


def seed_sequences():
    out = []
    entropies = [0, 5, 2**32 + 7, 2**63 - 2, 1234567890123456789]
    keys = [(), (0, 0), (1, 1), (5, 3), (2**33 + 1, 34)]
    for entropy in entropies:
        for key in keys:
            for pool in (4, 24):
                seq = np.random.SeedSequence(entropy=entropy, spawn_key=key, pool_size=pool)
                out.append(
                    {
                        "entropy": str(entropy),
                        "spawn_key": [str(k) for k in key],
                        "pool_size": pool,
                        "pool": [int(v) for v in seq.pool],
                        "state4": [int(v) for v in seq.generate_state(4)],
                    }
                )
    return out


def randints():
    out = []
    for seed in [0, 1, 42, 1234, 2**32 - 1, 31337]:
        g = torch.Generator().manual_seed(seed)
        big = torch.randint(0, 2**63 - 1, [], generator=g).item()
        torch.manual_seed(seed)
        assert torch.randint(0, 2**63 - 1, []).item() == big, "global and fresh generator disagree"
        small = torch.randint(0, 1000, [], generator=torch.Generator().manual_seed(seed)).item()
        out.append({"seed": seed, "randint_2p63m1": str(big), "randint_1000": small})
    return out


def roundings():
    rng = random.Random(6)
    values = [0.0078125, 0.0234375, 0.5, 1.5e-6, 2.5e-7, 14.614640235900879, 0.029167519882321358]
    values += [rng.uniform(0.0, 20.0) for _ in range(40)] + [rng.uniform(0.0, 1e-3) for _ in range(10)]
    return [{"x": f64_bits(x), "round6": f64_bits(round(x, 6))} for x in values]


def karras_sigmas():
    config = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "use_karras_sigmas": True,
    }
    scheduler = DPMSolverSDEScheduler(**config)
    scheduler.set_timesteps(6)
    return scheduler


def tree_case(name, entropy, t0, t1, shape, queries):
    tree = torchsde.BrownianInterval(
        t0=t0, t1=t1, size=shape, dtype=torch.float32, device="cpu", entropy=entropy,
        tol=1e-6, pool_size=24, halfway_tree=True,
    )
    answers = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde warns for the deliberately clamped queries
        for ta, tb in queries:
            w = tree(ta, tb)
            answers.append({"ta": f64_bits(ta), "tb": f64_bits(tb), "w": f32_bits(w)})
    return {"name": name, "entropy": str(entropy), "t0": f64_bits(t0), "t1": f64_bits(t1),
            "shape": list(shape), "queries": answers}


def trees():
    scheduler = karras_sigmas()
    sigmas = scheduler.sigmas
    lo, hi = float(sigmas[sigmas > 0].min()), float(sigmas.max())
    # Scheduler-like queries: each step's (next, current) and the midpoint halves.
    points = sorted({float(s) for s in sigmas if s > 0}, reverse=True)
    steps = [(b, a) for a, b in zip(points, points[1:])]
    rng = random.Random(12)
    randoms = []
    for _ in range(25):
        a, b = sorted(rng.uniform(lo, hi) for _ in range(2))
        randoms.append((a, b))
    edge = [(lo, hi), (lo - 1.0, lo + 0.5), (hi - 0.25, hi + 3.0), (1.0, 1.0)]
    cases = []
    for entropy in [0, 2**32 + 7, 6302956958512380035]:
        cases.append(tree_case(f"karras_{entropy}", entropy, lo, hi, (1, 4, 3, 5), steps + randoms + edge))
    unit = [(0.0, 1.0), (0.25, 0.75), (0.1, 0.2), (0.6, 0.61), (0.3, 0.9), (0.0, 0.5), (0.123456, 0.123458)]
    cases.append(tree_case("unit_small", 98765, 0.0, 1.0, (2, 3), unit))
    return cases


def noise_sampler():
    scheduler = karras_sigmas()
    sigmas = scheduler.sigmas
    entropy = torch.randint(0, 2**63 - 1, [], generator=torch.Generator().manual_seed(777)).item()
    x = torch.zeros(1, 4, 3, 5)
    min_sigma, max_sigma = sigmas[sigmas > 0].min(), sigmas.max()
    sampler = BrownianTreeNoiseSampler(x, min_sigma.item(), max_sigma.item(), entropy)
    calls = []
    t_fn = lambda s: s.log().neg()  # noqa: E731 (diffusers' own lambdas)
    sigma_fn = lambda t: t.neg().exp()  # noqa: E731
    for k in range(len(sigmas) - 2):
        sigma, nxt = sigmas[k], sigmas[k + 1]
        if nxt == 0:
            break
        t, t_next = t_fn(sigma), t_fn(nxt)
        mid = t + (t_next - t) * 0.5
        for a, b in [(sigma_fn(t), sigma_fn(mid)), (sigma_fn(t), sigma_fn(t_next))]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the last step's ends fall below the rounded t0
                noise = sampler(a, b)
            calls.append({"sigma": f32_bits([a])[0], "sigma_next": f32_bits([b])[0], "noise": f32_bits(noise)})
    return {"seed": 777, "entropy": str(entropy), "shape": [1, 4, 3, 5],
            "sigma_min": f32_bits([min_sigma])[0], "sigma_max": f32_bits([max_sigma])[0], "calls": calls}


def main():
    torch.set_num_threads(1)
    doc = {
        "torch": torch.__version__.split("+")[0],
        "torchsde": torchsde.__version__,
        "numpy": np.__version__,
        "seed_sequences": seed_sequences(),
        "randint": randints(),
        "rounding": roundings(),
        "trees": trees(),
        "noise_sampler": noise_sampler(),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"{OUT.relative_to(ROOT)}: {OUT.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()

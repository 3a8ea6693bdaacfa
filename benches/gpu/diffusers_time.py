"""Time diffusers on the same random-weight pipeline folders kiln renders, as the peer of
benches/gpu/run.sh. bf16, SDPA attention (diffusers' default on torch 2), Euler, CFG 7.

    python3 benches/gpu/diffusers_time.py sdxl FOLDER --size 1024 --steps 30 --batches 1 4
    python3 benches/gpu/diffusers_time.py sd15 FOLDER --size 512 --steps 50 --batches 1
    python3 benches/gpu/diffusers_time.py matmul

Prints one JSON object per measurement: end-to-end seconds per call (median of --repeat calls
after a warm-up call), the UNet call at CFG batch 2 (median of CUDA-event timings), the UNet's
FLOP count from torch's FlopCounterMode, and peak device memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

# CUDA on the device; the CPU only for a smoke test of this script (timings then meaningless).
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PROMPT = "a photograph of an astronaut riding a horse on the moon, highly detailed"


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def event_median(fn, repeat: int) -> float:
    """Median seconds of `fn` over `repeat` calls, timed with CUDA events after two warm-ups."""
    fn()
    fn()
    times = []
    for _ in range(repeat):
        if DEVICE == "cpu":
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
            continue
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return statistics.median(times)


def matmul_rate() -> None:
    """The bf16 matrix rate on random data: 8192^3 products, median of 20."""
    n = 8192
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    seconds = event_median(lambda: a @ b, 20)
    emit(what="bf16_matmul_8192", seconds=seconds, tflops=2 * n**3 / seconds / 1e12)


def pipeline(kind: str, folder: str, size: int, steps: int, batches: list[int], repeat: int) -> None:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    started = time.perf_counter()
    if kind == "sdxl":
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, torch_dtype=torch.bfloat16)
    else:
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, torch_dtype=torch.bfloat16, safety_checker=None, requires_safety_checker=False
        )
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe = pipe.to(DEVICE)
    pipe.set_progress_bar_config(disable=True)
    emit(what=f"{kind}_load", seconds=time.perf_counter() - started)

    def render(batch: int, n_steps: int) -> None:
        pipe(
            [PROMPT] * batch,
            negative_prompt=["blurry"] * batch,
            height=size,
            width=size,
            num_inference_steps=n_steps,
            guidance_scale=7.0,
            output_type="np",
            generator=torch.Generator(DEVICE).manual_seed(1),
        )
        if DEVICE == "cuda":
            torch.cuda.synchronize()

    render(1, 3)  # warm-up: kernels, cuDNN/cuBLAS heuristics, allocator
    for batch in batches:
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            render(batch, steps)
            times.append(time.perf_counter() - t)
        emit(
            what=f"{kind}_{size}_steps{steps}_batch{batch}",
            seconds_per_call=statistics.median(times),
            spread=[min(times), max(times)],
            images_per_second=batch / statistics.median(times),
            peak_gib=torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else None,
        )

    latent = size // 8
    unet = pipe.unet
    sample = torch.randn(2, 4, latent, latent, device=DEVICE, dtype=torch.bfloat16)
    width = unet.config.cross_attention_dim
    context = torch.randn(2, 77, width, device=DEVICE, dtype=torch.bfloat16)
    extra = {}
    if kind == "sdxl":
        extra["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 1280, device=DEVICE, dtype=torch.bfloat16),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]] * 2, device=DEVICE, dtype=torch.bfloat16),
        }
    timestep = torch.tensor(500, device=DEVICE)

    def call() -> None:
        with torch.no_grad():
            unet(sample, timestep, encoder_hidden_states=context, **extra)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        call()
    flops = counter.get_total_flops()
    seconds = event_median(call, 10)
    emit(what=f"{kind}_unet_cfg_batch2_{latent}x{latent}", seconds=seconds, flops=flops,
         tflops=flops / seconds / 1e12)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["sdxl", "sd15", "matmul"])
    parser.add_argument("folder", nargs="?")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.kind == "matmul":
        matmul_rate()
    else:
        pipeline(args.kind, args.folder, args.size, args.steps, args.batches, args.repeat)


if __name__ == "__main__":
    main()

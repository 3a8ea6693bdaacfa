"""Sampler parity fixtures: diffusers' schedules and denoising steps for OctoAI's 21 sampler names.

What it makes: `fixtures/samplers/octoai_names.json` (the 21 names of OctoAI's API schema,
`Scheduler` enum, read from /work/shared/spec/octoai-imagegen-openapi.json) and
`fixtures/samplers/<NAME>.json`, one file per OctoAI sampler name, each holding
cases for three scheduler configurations (the tiny SD 1.5 and SDXL checkpoints' own
`scheduler/scheduler_config.json`, and the SDXL one with `prediction_type = "v_prediction"`),
text-to-image at 1, 4, 20 and 30 steps, and image-to-image at strength 0.3 and 0.8 (20 steps).

How: each name is mapped to a diffusers scheduler class and options (`SAMPLERS` below, the same
table as `pipeline/src/samplers/name.rs`), built with `Class.from_config(config, **options)` and
driven the way diffusers' Stable Diffusion pipelines drive it, with a deterministic stand-in for
the UNet:

    eps(x, t) = tanh(0.7 * x) * cos(t / 300) + 0.1 * x      (x = scale_model_input(latents, t))

The initial latent (NCHW [1, 4, 2, 3], torch.manual_seed) and every noise tensor a scheduler draws
(diffusers' `randn_tensor`, and for DPM_PLUS_PLUS_SDE_KARRAS the normalised Brownian-tree
increments of its `BrownianTreeNoiseSampler`, both patched to record) are stored so the Rust test replays the same
noise. Per case: timesteps (one per model call), sigmas (where the scheduler has them),
init_noise_sigma, and every step's output (1 and 4 steps) or only the final output
(20 and 30 steps, img2img; any error in a step shows in it). A case diffusers refuses records the error message instead.

Layout: every tensor is stored NHWC (kiln's layout), flattened row-major: diffusers' NCHW
tensors are permuted with `permute(0, 2, 3, 1)` before writing.

Run: /work/venv/bin/python tools/make_sampler_fixtures.py   (deterministic: identical bytes)
"""

import importlib
import inspect
import json
import math
from pathlib import Path

import diffusers
import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "samplers"

# OctoAI name -> (diffusers class, options). Mirrors pipeline/src/samplers/name.rs.
SAMPLERS = {
    "PNDM": ("PNDMScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "KLMS": ("LMSDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
    "HEUN": ("HeunDiscreteScheduler", {}),
    "K_HEUN": ("HeunDiscreteScheduler", {}),
    "K_EULER": ("EulerDiscreteScheduler", {}),
    "K_EULER_ANCESTRAL": ("EulerAncestralDiscreteScheduler", {}),
    "DPM_SOLVER_MULTISTEP": ("DPMSolverMultistepScheduler", {}),
    "DPM_PLUS_PLUS_2M_KARRAS": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM_PLUS_PLUS_2M_SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM_PLUS_PLUS_2M_SDE_KARRAS": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    "DPM_SINGLE": ("DPMSolverSinglestepScheduler", {}),
    "DPM_2": ("KDPM2DiscreteScheduler", {}),
    "DPM_2_KARRAS": ("KDPM2DiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM_2_ANCESTRAL": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM_2_ANCESTRAL_KARRAS": ("KDPM2AncestralDiscreteScheduler", {"use_karras_sigmas": True}),
    "DPM_PLUS_PLUS_SDE_KARRAS": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "UNI_PC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
}

SHAPE = (1, 4, 2, 3)  # NCHW as diffusers sees it; H != W so a layout slip shows
TXT2IMG_STEPS = [(1, True), (4, True), (20, False), (30, False)]  # (steps, record every step)
IMG2IMG = [(20, 0.3), (20, 0.8)]


SPEC = Path("/work/shared/spec/octoai-imagegen-openapi.json")


def write_octoai_names():
    """fixtures/samplers/octoai_names.json: the API schema's Scheduler enum, for the parse test."""
    names = json.loads(SPEC.read_text())["components"]["schemas"]["Scheduler"]["enum"]
    assert sorted(names) == sorted(SAMPLERS), "the table above must cover exactly OctoAI's names"
    (OUT / "octoai_names.json").write_text(json.dumps(names) + "\n")


def load_configs():
    sd15 = json.loads((ROOT / "fixtures/tiny/sd15/scheduler/scheduler_config.json").read_text())
    sdxl = json.loads((ROOT / "fixtures/tiny/sdxl/scheduler/scheduler_config.json").read_text())
    sdxl_v = dict(sdxl, prediction_type="v_prediction")
    return {"sd15": sd15, "sdxl": sdxl, "sdxl_v": sdxl_v}


def f32(v):
    """Shortest decimal that reads back as the same f32 (keeps the files small)."""
    return float(f"{float(v):.9g}")


def nhwc(x):
    return [f32(v) for v in x.permute(0, 2, 3, 1).contiguous().flatten().tolist()]


def stand_in_model(x, t):
    t = float(t)
    return torch.tanh(0.7 * x) * math.cos(t / 300.0) + 0.1 * x


class NoiseRecorder:
    """Wraps diffusers' randn_tensor in every scheduler module, keeping what it drew."""

    def __init__(self):
        self.drawn = []
        self.original = diffusers.utils.torch_utils.randn_tensor
        self.modules = []

    def install(self):
        import pkgutil

        for info in pkgutil.iter_modules(diffusers.schedulers.__path__):
            if not info.name.startswith("scheduling_"):
                continue
            try:
                module = importlib.import_module(f"diffusers.schedulers.{info.name}")
            except Exception:  # optional dependencies (flax, torchsde, scipy)
                continue
            if hasattr(module, "randn_tensor"):
                module.randn_tensor = self.draw
                self.modules.append(module)
            # DPMSolverSDEScheduler draws Brownian-tree increments (torchsde), not randn_tensor:
            # record what its noise sampler returns.
            sampler = getattr(module, "BrownianTreeNoiseSampler", None)
            if sampler is not None and not getattr(sampler, "_recorded", False):
                sampler._recorded = True
                original_call = sampler.__call__

                def recorded_call(this, sigma, sigma_next, _original=original_call):
                    noise = _original(this, sigma, sigma_next)
                    self.drawn.append(nhwc(noise))
                    return noise

                sampler.__call__ = recorded_call

    def draw(self, *args, **kwargs):
        noise = self.original(*args, **kwargs)
        self.drawn.append(nhwc(noise))
        return noise


def run_case(cls, options, config, steps, strength, every, recorder):
    sched = cls.from_config(config, **options)
    torch.manual_seed(1234)
    initial = torch.randn(SHAPE, dtype=torch.float32)
    image_latents = torch.randn(SHAPE, dtype=torch.float32)
    add_noise_noise = torch.randn(SHAPE, dtype=torch.float32)
    generator = torch.Generator().manual_seed(99)
    recorder.drawn = []
    case = {"steps": steps, "strength": strength}
    takes_generator = "generator" in inspect.signature(sched.step).parameters
    try:
        sched.set_timesteps(steps)
        timesteps = sched.timesteps
        case["schedule_timesteps"] = [f32(t) for t in timesteps]
        if strength is None:
            latents = initial * sched.init_noise_sigma
            case["initial"] = nhwc(initial)
        else:
            init_timestep = min(int(steps * strength), steps)
            t_start = max(steps - init_timestep, 0)
            timesteps = timesteps[t_start * sched.order :]
            if hasattr(sched, "set_begin_index"):
                sched.set_begin_index(t_start * sched.order)
            case["image_latents"] = nhwc(image_latents)
            case["add_noise_noise"] = nhwc(add_noise_noise)
            latents = sched.add_noise(image_latents, add_noise_noise, timesteps[:1])
            case["noised"] = nhwc(latents)
        case["timesteps"] = [f32(t) for t in timesteps]
        sigmas = getattr(sched, "sigmas", None)
        case["sigmas"] = None if sigmas is None else [f32(s) for s in sigmas]
        case["init_noise_sigma"] = f32(sched.init_noise_sigma)
        outputs = []
        for t in timesteps:
            x_in = sched.scale_model_input(latents, t)
            eps = stand_in_model(x_in, t)
            extra = {"generator": generator} if takes_generator else {}
            latents = sched.step(eps, t, latents, return_dict=False, **extra)[0]
            if every:
                outputs.append(nhwc(latents))
        case["outputs"] = outputs
        case["final"] = nhwc(latents)
        case["noise"] = recorder.drawn
    except Exception as e:  # diffusers refuses this case: kiln must refuse it too
        case = {"steps": steps, "strength": strength, "error": f"{type(e).__name__}: {e}"}
    return case


def main():
    torch.set_num_threads(1)
    recorder = NoiseRecorder()
    recorder.install()
    configs = load_configs()
    OUT.mkdir(parents=True, exist_ok=True)
    write_octoai_names()
    total = 0
    for name, (class_name, options) in SAMPLERS.items():
        try:
            cls = getattr(diffusers, class_name)
            cls.from_config(configs["sd15"], **options)
        except Exception as e:
            print(f"{name}: skipped ({type(e).__name__}: {e})")
            continue
        cases = []
        for config_name, config in configs.items():
            for steps, every in TXT2IMG_STEPS:
                case = run_case(cls, options, config, steps, None, every, recorder)
                cases.append(dict(config=config_name, **case))
            for steps, strength in IMG2IMG:
                case = run_case(cls, options, config, steps, strength, False, recorder)
                cases.append(dict(config=config_name, **case))
        doc = {
            "sampler": name,
            "diffusers_class": class_name,
            "options": options,
            "diffusers_version": diffusers.__version__,
            "shape_nhwc": [SHAPE[0], SHAPE[2], SHAPE[3], SHAPE[1]],
            "cases": cases,
        }
        text = json.dumps(doc, separators=(",", ":"))
        (OUT / f"{name}.json").write_text(text + "\n")
        total += len(text)
        errors = sum(1 for c in cases if "error" in c)
        print(f"{name}: {len(cases)} cases ({errors} refused by diffusers), {len(text) // 1024} KiB")
    print(f"total {total // 1024} KiB")


if __name__ == "__main__":
    main()

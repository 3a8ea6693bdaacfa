"""The deepest clip_skip diffusers' pipelines accept for kiln's small models -> fixtures/request/clip_skip_limits.json.

For each model (the tiny SD 1.5 and SDXL fixtures, and kiln's built-in demo model's configs), the
text encoders are built from the folder's config.json files with random weights (only their
depth matters), put in StableDiffusionPipeline / StableDiffusionXLPipeline, and `encode_prompt`
is called with clip_skip None, 1, 2, ... (diffusers' convention: 1 skips one layer) until it
raises (the encoders' `hidden_states` tuple has no such entry). The file records the largest
clip_skip that encoded, and each encoder's `num_hidden_layers`. kiln's request `clip_skip` is
OctoAI's (1 = the last layer), diffusers' plus one: pipeline/tests/request_clip_skip.rs checks
that kiln accepts exactly up to the recorded value plus one, reading the model's headers only.
With transformers 5, diffusers 0.42.1's SD 1.5 clip_skip path reaches for
`text_encoder.text_model.final_layer_norm` (CLIPTextModel is now the text transformer itself):
as tools/make_text_encoder_fixtures.py does, `text_model` is aliased to the model so that
diffusers' own code runs.

Deterministic. Run: /work/venv/bin/python tools/make_clip_skip_fixtures.py (~10 s).
"""

import json
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "request" / "clip_skip_limits.json"
TOKENIZER = ROOT / "fixtures" / "tiny" / "sd15" / "tokenizer"

# (name, model folder relative to the repository, SDXL?)
MODELS = [
    ("tiny_sd15", "fixtures/tiny/sd15", False),
    ("tiny_sdxl", "fixtures/tiny/sdxl", True),
    ("demo_sdxl", "pipeline/assets/demo_sdxl", True),
]


def encoder(folder, cls):
    config = CLIPTextConfig.from_pretrained(folder)
    torch.manual_seed(0)
    model = cls(config).float().eval()
    if not hasattr(model, "text_model"):
        object.__setattr__(model, "text_model", model)
    return model


def encodes(pipe, sdxl, clip_skip):
    kwargs = {"prompt": "a red fox", "device": "cpu", "num_images_per_prompt": 1,
              "do_classifier_free_guidance": False, "clip_skip": clip_skip}
    if sdxl:
        kwargs["prompt_2"] = None
    try:
        with torch.no_grad():
            pipe.encode_prompt(**kwargs)
    except IndexError:
        return False
    return True


def limit(folder, sdxl):
    tokenizer = CLIPTokenizer.from_pretrained(TOKENIZER)
    first = encoder(folder / "text_encoder", CLIPTextModel)
    layers = [first.config.num_hidden_layers]
    if sdxl:
        second = encoder(folder / "text_encoder_2", CLIPTextModelWithProjection)
        layers.append(second.config.num_hidden_layers)
        pipe = StableDiffusionXLPipeline(vae=None, text_encoder=first, text_encoder_2=second, tokenizer=tokenizer,
                                         tokenizer_2=tokenizer, unet=None, scheduler=None)
    else:
        pipe = StableDiffusionPipeline(vae=None, text_encoder=first, tokenizer=tokenizer, unet=None, scheduler=None,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    assert encodes(pipe, sdxl, None), "the default layer must encode"
    deepest = 0
    while encodes(pipe, sdxl, deepest + 1):
        deepest += 1
        assert deepest < 100, "clip_skip never fails"
    return {"num_hidden_layers": layers, "max_diffusers_clip_skip": deepest}


def main():
    out = {}
    for name, folder, sdxl in MODELS:
        out[name] = {"path": folder, "sdxl": sdxl, **limit(ROOT / folder, sdxl)}
        print(name, out[name])
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

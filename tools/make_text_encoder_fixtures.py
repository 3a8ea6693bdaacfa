"""Text-encoder parity fixtures -> fixtures/parity/text_sd15.safetensors, text_sdxl.safetensors.

What it makes: the prompt embeddings diffusers' `encode_prompt` gives on the tiny pipelines
(fixtures/tiny/sd15, fixtures/tiny/sdxl, loaded in float32 on the CPU), for a few prompts with
`clip_skip` None, 1 and 2, SDXL's `prompt_2` and its pooled output, negative prompts (including
SDXL's `negative_prompt=None`, which gives zeros), plus long-prompt references: the windows of
the reference A1111 chunker of tools/make_tokenizer_fixtures.py, each run through transformers'
text model(s), the layer picked by diffusers' rule, concatenated along the tokens (pooled: the
first window's), a negative prompt padded with empty-prompt windows to the same count.

The short-prompt references of the window path are checked against `encode_prompt` itself, so
the long-prompt references use exactly diffusers' layer rules:
  SD 1.5: clip_skip None -> last_hidden_state; k -> final_layer_norm(hidden_states[-(k+1)]);
  SDXL:   both encoders hidden_states[-(clip_skip+2)] (no final LN), concatenated on channels;
          pooled = text_encoder_2's text_embeds. (diffusers ignores clip_skip for negatives;
          negatives are only stored for clip_skip None.)
With transformers 5, diffusers 0.42.1's SD 1.5 clip_skip path fails (it reaches for
`text_encoder.text_model.final_layer_norm`, gone in transformers 5); the script aliases
`text_model` to the model itself so that diffusers' own code runs.
Each file holds, per case `<name>`: `<name>.ids` (int32 [encoders, windows, 77], the windows
used), `<name>.positive`, optionally `<name>.negative`, and for SDXL `<name>.pooled` /
`<name>.negative_pooled`; the cases (prompts, clip_skip) are JSON in the metadata key "cases".

Run:   /work/venv/bin/python tools/make_text_encoder_fixtures.py   (~10 s; byte-identical reruns)
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import safetensors.torch  # noqa: E402
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tokenizer_fixtures import FILLER, chunk_windows, prompt_of_length  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "fixtures" / "tiny"
OUT = ROOT / "fixtures" / "parity"

SHORT = "a photo of a cat, highly detailed, (masterpiece:1.2)"
OTHER = "Hello, world! an oil painting of a lighthouse at dusk"
NEGATIVE = "blurry, low quality"


def windows_of(tok, text: str) -> list[list[int]]:
    body = tok(text, add_special_tokens=False).input_ids
    comma = tok.get_vocab()[",</w>"]
    windows, _ = chunk_windows(body, comma, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)
    return windows


def empty_window(tok) -> list[int]:
    return windows_of(tok, "")[0]


@torch.no_grad()
def run_windows(encoder, windows: list[list[int]], pick):
    """Each window through `encoder`; hidden states picked by `pick`, concatenated along tokens."""
    out = encoder(torch.tensor(windows), output_hidden_states=True)
    hidden = pick(encoder, out)  # [k, 77, C]
    k, l, c = hidden.shape
    pooled = out.text_embeds[:1] if hasattr(out, "text_embeds") else None
    return hidden.reshape(1, k * l, c), pooled


def sd15_pick(clip_skip):
    def pick(encoder, out):
        if clip_skip is None:
            return out.last_hidden_state
        return encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)])
    return pick


def sdxl_pick(clip_skip):
    def pick(encoder, out):
        return out.hidden_states[-((clip_skip or 0) + 2)]
    return pick


def pad_to(windows: list[list[int]], count: int, tok) -> list[list[int]]:
    return windows + [empty_window(tok)] * (count - len(windows))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), (a - b).abs().max()


def sd15(tensors: dict, cases: list) -> None:
    pipe = StableDiffusionPipeline.from_pretrained(str(TINY / "sd15"), torch_dtype=torch.float32,
                                                   safety_checker=None, requires_safety_checker=False)
    tok, enc = pipe.tokenizer, pipe.text_encoder
    # diffusers 0.42.1 reaches the final layer norm as `text_encoder.text_model.final_layer_norm`,
    # which transformers 5 no longer has (CLIPTextModel is the text transformer itself): alias it
    # (without registering a submodule) so that encode_prompt's own clip_skip path runs.
    if not hasattr(enc, "text_model"):
        object.__setattr__(enc, "text_model", enc)
    n_layers = enc.config.num_hidden_layers
    assert all(len(enc(torch.tensor([[49406, 49407]]), output_hidden_states=True).hidden_states) == n_layers + 1
               for _ in [0])
    long = prompt_of_length(tok, 160, FILLER)
    specs = [
        ("short_none", SHORT, NEGATIVE, None),
        ("short_skip1", SHORT, None, 1),
        ("short_skip2", SHORT, None, 2),
        ("other_none", OTHER, "", None),
        ("empty_none", "", None, None),
        ("long_none", long, NEGATIVE, None),
        ("long_skip2", long, None, 2),
    ]
    for name, prompt, negative, clip_skip in specs:
        w = windows_of(tok, prompt)
        pos, _ = run_windows(enc, w, sd15_pick(clip_skip))
        entry = {"name": name, "prompt": prompt, "prompt_2": None, "negative": negative, "negative_2": None,
                 "clip_skip": clip_skip}
        ids = [w]
        if len(w) == 1:
            pe, npe = pipe.encode_prompt(prompt, "cpu", 1, True, negative_prompt=negative, clip_skip=clip_skip)
            close(pos, pe)
        tensors[f"{name}.positive"] = pos
        if negative is not None:
            nw = pad_to(windows_of(tok, negative), len(w), tok)
            neg, _ = run_windows(enc, nw, sd15_pick(clip_skip))
            if len(w) == 1:
                close(neg, npe)
            tensors[f"{name}.negative"] = neg
        tensors[f"{name}.ids"] = torch.tensor(ids, dtype=torch.int32)
        cases.append(entry)


def sdxl(tensors: dict, cases: list) -> None:
    pipe = StableDiffusionXLPipeline.from_pretrained(str(TINY / "sdxl"), torch_dtype=torch.float32)
    assert pipe.config.force_zeros_for_empty_prompt
    toks, encs = [pipe.tokenizer, pipe.tokenizer_2], [pipe.text_encoder, pipe.text_encoder_2]
    long = prompt_of_length(toks[0], 160, FILLER)
    specs = [
        ("short_none", SHORT, None, NEGATIVE, None, None),
        ("short_skip1", SHORT, None, None, None, 1),
        ("short_skip2", SHORT, None, None, None, 2),
        ("prompt2_none", SHORT, OTHER, NEGATIVE, "worst quality", None),
        ("bang_none", OTHER, None, "", None, None),
        ("long_none", long, None, NEGATIVE, None, None),
        ("long_skip1", long, OTHER, None, None, 1),
    ]
    for name, prompt, prompt_2, negative, negative_2, clip_skip in specs:
        texts = [prompt, prompt_2 or prompt]
        ws = [windows_of(t, p) for t, p in zip(toks, texts)]
        count = max(len(w) for w in ws)
        ws = [pad_to(w, count, t) for w, t in zip(ws, toks)]
        outs = [run_windows(e, w, sdxl_pick(clip_skip)) for e, w in zip(encs, ws)]
        pos = torch.cat([outs[0][0], outs[1][0]], dim=-1)
        pooled = outs[1][1]
        entry = {"name": name, "prompt": prompt, "prompt_2": prompt_2, "negative": negative,
                 "negative_2": negative_2, "clip_skip": clip_skip}
        # encode_prompt with the negative (None -> zeros, since force_zeros_for_empty_prompt).
        ref = pipe.encode_prompt(prompt, prompt_2, "cpu", 1, True, negative_prompt=negative,
                                 negative_prompt_2=negative_2, clip_skip=clip_skip)
        pe, npe, pp, npp = ref
        if count == 1:
            close(pos, pe)
            close(pooled, pp)
        tensors[f"{name}.positive"] = pos
        tensors[f"{name}.pooled"] = pooled
        if negative is None:
            assert not npe.any() and not npp.any()
            if count == 1:
                tensors[f"{name}.negative"] = npe
                tensors[f"{name}.negative_pooled"] = npp
        elif clip_skip is None:
            ntexts = [negative, negative_2 or negative]
            nws = [pad_to(windows_of(t, p), count, t) for t, p in zip(toks, ntexts)]
            nouts = [run_windows(e, w, sdxl_pick(None)) for e, w in zip(encs, nws)]
            neg = torch.cat([nouts[0][0], nouts[1][0]], dim=-1)
            if count == 1:
                close(neg, npe)
                close(nouts[1][1], npp)
            tensors[f"{name}.negative"] = neg
            tensors[f"{name}.negative_pooled"] = nouts[1][1]
        tensors[f"{name}.ids"] = torch.tensor(ws, dtype=torch.int32)
        cases.append(entry)


def main() -> None:
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for label, build in [("sd15", sd15), ("sdxl", sdxl)]:
        tensors: dict = {}
        cases: list = []
        build(tensors, cases)
        tensors = {k: v.detach().to(torch.float32 if v.is_floating_point() else v.dtype).contiguous()
                   for k, v in sorted(tensors.items())}
        path = OUT / f"text_{label}.safetensors"
        safetensors.torch.save_file(tensors, str(path), metadata={"cases": json.dumps(cases, ensure_ascii=False)})
        print(f"wrote {path.relative_to(ROOT)}: {len(cases)} cases, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

"""Text-encoder parity fixtures -> fixtures/parity/text_sd15.safetensors, text_sdxl.safetensors.

What it makes: the prompt embeddings diffusers' `encode_prompt` gives on the tiny pipelines
(fixtures/tiny/sd15, fixtures/tiny/sdxl, loaded in float32 on the CPU), for a few prompts with
`clip_skip` None, 1 and 2, SDXL's `prompt_2` and its pooled output, negative prompts (including
SDXL's `negative_prompt=None`, which gives zeros), plus long-prompt references: the windows of
the reference A1111 chunker of tools/make_tokenizer_fixtures.py, each run through transformers'
text model(s), the layer picked by diffusers' rule, concatenated along the tokens (pooled: the
first window's), a negative prompt padded with empty-prompt windows to the same count.

Prompt length limits (OctoAI: "a 77 token limit on prompts for SDXL and 231 for SD 1.5"): SDXL
cases marked `long_prompts: false` are kiln's default, diffusers' truncation: the reference is
`encode_prompt` itself (tokenizer truncation to model_max_length) for prompts, prompt_2 and
negatives past 77 tokens (an 81-token prompt among them), and a short prompt with the word
BREAK (text to diffusers). SDXL cases marked `long_prompts: true` are `--long-prompts`: the A1111
windows above. SD 1.5 always uses windows; one case is past 231 tokens. Each case's `dropped`
maps each request field that loses tokens to how many, counted by the reference tokenizer
(truncation: its untruncated length less model_max_length; windows: what the reference chunker
drops past 3 windows), and `limit` is the limit in tokens (model_max_length, or 3 windows of
77).

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
from make_tokenizer_fixtures import FILLER, MAX_WINDOWS, WINDOW, chunk_windows, prompt_of_length  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "fixtures" / "tiny"
OUT = ROOT / "fixtures" / "parity"

SHORT = "a photo of a cat, highly detailed, (masterpiece:1.2)"
OTHER = "Hello, world! an oil painting of a lighthouse at dusk"
NEGATIVE = "blurry, low quality"


def chunked(tok, text: str) -> tuple[list[list[int]], int]:
    """The reference A1111 windows of `text` and the prompt tokens dropped past them."""
    body = tok(text, add_special_tokens=False).input_ids
    comma = tok.get_vocab()[",</w>"]
    return chunk_windows(body, comma, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id)


def windows_of(tok, text: str) -> list[list[int]]:
    return chunked(tok, text)[0]


def truncated_of(tok, text: str) -> list[list[int]]:
    """diffusers' single window: padded to model_max_length and truncated to it."""
    ids = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True).input_ids
    return [ids]


def dropped_of(tok, text: str, long_prompts: bool) -> int:
    """Prompt tokens of `text` that do not fit: past the windows, or past model_max_length."""
    if long_prompts:
        return chunked(tok, text)[1]
    return max(0, len(tok(text).input_ids) - tok.model_max_length)


def dropped_fields(toks, texts: dict, long_prompts: bool) -> dict:
    """{field: dropped tokens} over the fields that lose some; `texts` maps each field to
    (text, the tokenizers it feeds)."""
    out = {}
    for field, (text, feeds) in texts.items():
        n = max(dropped_of(toks[i], text, long_prompts) for i in feeds)
        if n:
            out[field] = n
    return out


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
        ("overlong_none", prompt_of_length(tok, 260, FILLER), prompt_of_length(tok, 240, FILLER[3:]), None),
    ]
    for name, prompt, negative, clip_skip in specs:
        w = windows_of(tok, prompt)
        pos, _ = run_windows(enc, w, sd15_pick(clip_skip))
        fields = {"prompt": (prompt, [0]), "negative_prompt": (negative or "", [0])}
        entry = {"name": name, "prompt": prompt, "prompt_2": None, "negative": negative, "negative_2": None,
                 "clip_skip": clip_skip, "long_prompts": True, "limit": MAX_WINDOWS * WINDOW,
                 "dropped": dropped_fields([tok], fields, True)}
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
    # 79 prompt tokens: 81 with BOS and EOS, 4 past the 77-token limit.
    over = prompt_of_length(toks[0], 79, FILLER)
    over_negative = prompt_of_length(toks[0], 90, FILLER[5:])
    specs = [  # (name, prompt, prompt_2, negative, negative_2, clip_skip, long_prompts)
        ("short_none", SHORT, None, NEGATIVE, None, None, False),
        ("short_skip1", SHORT, None, None, None, 1, False),
        ("short_skip2", SHORT, None, None, None, 2, False),
        ("prompt2_none", SHORT, OTHER, NEGATIVE, "worst quality", None, False),
        ("bang_none", OTHER, None, "", None, None, False),
        ("long_none", long, None, NEGATIVE, None, None, True),
        ("long_skip1", long, OTHER, None, None, 1, True),
        ("overlong_long", prompt_of_length(toks[0], 250, FILLER), None, NEGATIVE, None, None, True),
        ("trunc81_none", over, None, over_negative, None, None, False),
        ("trunc81_skip1", over, None, None, None, 1, False),
        ("trunc_prompt2_none", SHORT, long, NEGATIVE, over_negative, None, False),
        ("trunc_prompt2_skip2", long, OTHER, None, None, 2, False),
        ("break_none", "a red boat BREAK a lighthouse at dusk", None, "BREAK, blurry", None, None, False),
    ]
    for name, prompt, prompt_2, negative, negative_2, clip_skip, long_prompts in specs:
        texts = [prompt, prompt_2 or prompt]
        split = windows_of if long_prompts else truncated_of
        ws = [split(t, p) for t, p in zip(toks, texts)]
        count = max(len(w) for w in ws)
        ws = [pad_to(w, count, t) for w, t in zip(ws, toks)]
        outs = [run_windows(e, w, sdxl_pick(clip_skip)) for e, w in zip(encs, ws)]
        pos = torch.cat([outs[0][0], outs[1][0]], dim=-1)
        pooled = outs[1][1]
        fields = {"prompt": (prompt, [0] if prompt_2 else [0, 1])}
        if prompt_2:
            fields["prompt_2"] = (prompt_2, [1])
        if negative is not None:  # None gives zeros: nothing is tokenized
            fields["negative_prompt"] = (negative, [0] if negative_2 else [0, 1])
            if negative_2:
                fields["negative_prompt_2"] = (negative_2, [1])
        entry = {"name": name, "prompt": prompt, "prompt_2": prompt_2, "negative": negative,
                 "negative_2": negative_2, "clip_skip": clip_skip, "long_prompts": long_prompts,
                 "limit": MAX_WINDOWS * WINDOW if long_prompts else toks[0].model_max_length,
                 "dropped": dropped_fields(toks, fields, long_prompts)}
        assert toks[0].model_max_length == toks[1].model_max_length
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
            nws = [pad_to(split(t, p), count, t) for t, p in zip(toks, ntexts)]
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

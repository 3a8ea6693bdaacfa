"""Prompt-weighting fixtures -> fixtures/prompt/attention.json, weighted_{sd15,sdxl}.safetensors.

What it makes:
- attention.json: AUTOMATIC1111's own `parse_prompt_attention` (modules/prompt_parser.py of
  AUTOMATIC1111/stable-diffusion-webui) on ~45 prompts: plain text, nesting, explicit weights,
  escapes, unbalanced brackets, odd numbers, BREAK, unicode, commas. Each case holds the
  segments `[text, weight]` it returns (weight as the string of Python's repr, exact), or the
  exception it raises ("error").
- windows.json: A1111's weighted windows (below) of ~60 prompts (the parser prompts, BREAK at
  the edges, weights across window cuts and comma moves, more than 3 windows) for SD 1.5's
  tokenizer and SDXL's tokenizer_2: ids, the positions whose float32 weight is not 1, and the
  prompt tokens dropped beyond 3 windows.
- weighted_{sd15,sdxl}.safetensors: the conditioning A1111 computes for weighted prompts on the
  tiny models (fixtures/tiny/sd15, fixtures/tiny/sdxl; transformers' CLIPTextModel /
  CLIPTextModelWithProjection, float32, CPU). This script re-implements, from reading A1111's
  modules/sd_hijack_clip.py and sd_emphasis.py ("Original" emphasis), what they do with the
  parser's segments: each segment tokenized on its own (transformers' CLIPTokenizer,
  add_special_tokens=False), windows of 75 tokens with the comma backtrack of 20, `BREAK`
  closing the current window, BOS / EOS / padding weight 1; each window through the encoder, the
  hidden state picked by kiln's (diffusers') clip_skip rule (the prompt's only: negatives use the
  default layer, as diffusers), then per window
  `z = z * w[:, None]; z = z * (mean_before / mean_after)`. Both SDXL encoders are weighted
  separately, then concatenated on channels; the pooled output is OpenCLIP-G's first window's,
  unweighted. Windows beyond 3 are dropped (kiln's cap); a prompt and its negative are padded
  with empty-prompt windows (weight 1) to the largest window count of either, on either encoder.
  SDXL's default, diffusers' truncation (cases marked `"truncated": true`): one window of the
  first 75 prompt tokens, the same weights, `BREAK` read as the word "break" (text to
  diffusers), no comma moves.
  Per case `<name>`: `<name>.ids` (int32 [encoders, windows, 77]), `<name>.weights` (float32,
  same shape), `<name>.positive`, optionally `<name>.negative` (and for SDXL `<name>.pooled`,
  `<name>.negative_pooled`); the cases are JSON in the metadata key "cases".

A1111's file is not part of kiln: fetch modules/prompt_parser.py from the web UI's repository,
put it in a directory outside this repository, and give its path. It imports lark (and torch).

Run:   /work/venv/bin/pip install lark
       /work/venv/bin/python tools/make_prompt_fixtures.py /tmp/a1111/modules/prompt_parser.py
(~10 s; byte-identical reruns)
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
import safetensors.torch  # noqa: E402
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tokenizer_fixtures import NO_COMMA_FILLER, prompt_of_length  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "fixtures" / "tiny"
OUT = ROOT / "fixtures" / "prompt"

CHUNK = 75
BACKTRACK = 20
MAX_WINDOWS = 3

PARSER_PROMPTS = [
    "",
    "a photo of a cat",
    "a photo of a cat, highly detailed, sharp focus",
    "an (important) word",
    "a [less important] word",
    "(masterpiece:1.2), best quality",
    "((double)) and (((triple)))",
    "[[half]] and [[[third]]]",
    "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
    "(red (green:0.5) blue:2)",
    "([mixed]) [(mixed)]",
    "(unnecessary)(parens)",
    "(unbalanced",
    "[unbalanced",
    "unbalanced)",
    "unbalanced]",
    "((open twice",
    "([open round then square",
    "closed) twice) and (one",
    "a ] b [ c ) d ( e",
    r"\(literal\]",
    r"\(not weighted:1.5\)",
    r"back\\slash and \x lone",
    "trailing backslash \\",
    "(a:-1)",
    "(a:+0.5)",
    "(a:.5) (b:2.) (c:007)",
    "(a:0)",
    "(spaced : 1.5)",
    "(a:1.5 )",
    "(a:1.2.3)",
    "(a:.)",
    "x:1.5) y",
    "colon: in: text",
    "a cat BREAK a dog",
    "BREAK",
    "  BREAK  leading",
    "a BREAK",
    "one BREAK BREAK two",
    "BREAKING news, xBREAK, _BREAK",
    "(a BREAK b)",
    "(BRE:-1)(AK:-1)",
    "a\u001cBREAK\u001cb",
    "caf\u00e9 (cr\u00e8me br\u00fbl\u00e9e:1.3), \u65e5\u672c\u8a9e (\u732b)",
    "a (cat:\u0661.\u0665)",
    "(a:\U0001d7d9.\U0001d7e0) (b:\u0967\u0966)",
    "emoji \U0001f431 ([\U0001f525])",
    "a, b, (c, d:1.1), [e, f]",
    "\n(multi\nline:1.2)\t[tabs]",
]

# Tiny models have ~10 tokens per short phrase; the long prompt spans two windows with a weight
# crossing the window boundary and a comma near it.
LONG = (
    "(masterpiece:1.3), best quality, a detailed portrait of an old sailor with a grey beard, "
    "wearing a (wool cap), standing on the deck of a wooden ship at sunset, [dramatic lighting], "
    "cinematic composition, sharp focus, intricate details, oil painting by a famous artist, "
    "warm colors, soft shadows, (volumetric fog:0.8), trending on artstation, highly detailed face, "
    "weathered skin, ((piercing blue eyes, rope and sails in the background, seagulls flying "
    "overhead)), calm sea, golden hour, photorealistic, 85mm lens, [[bokeh]], film grain"
)
BREAK_PROMPT = "a cat sitting on a (red:1.2) sofa BREAK [dark] background, (soft light)"

# (name, prompt, prompt_2, negative, negative_2, clip_skip)
SD15_CASES = [
    ("weighted", "a (red:1.3) cat on a [wooden] table, ((sharp focus))", None, "(blurry:1.4), low quality",
     None, None),
    ("nested_skip1", "((a castle)) in the [[fog]], (towers:0.7)", None, None, None, 1),
    ("long", LONG, None, "[ugly], (deformed:1.2)", None, None),
    ("break", BREAK_PROMPT, None, "", None, None),
    ("negative_weight", "a (dog:-0.5) in a field", None, "(cat:0)", None, 2),
]
SDXL_CASES = [
    ("weighted", "a (red:1.3) cat on a [wooden] table, ((sharp focus))", None, "(blurry:1.4), low quality",
     None, None),
    ("prompt2", "a (cat:1.5) on a sofa", "[oil painting], (impressionist:1.2)", "(blurry)", "[noisy]", None),
    ("long", LONG, None, None, None, None),
    ("break", BREAK_PROMPT, "a plain prompt_2", "[ugly], (deformed:1.2)", None, None),
    ("skip1", "((a castle)) in the [[fog]], (towers:0.7)", None, "(blurry:1.4)", None, 1),
]
# SDXL without --long-prompts: truncated to one window (prompts and negatives past 75 tokens).
SDXL_TRUNCATED_CASES = [
    ("trunc_long", LONG, None, "[ugly], (deformed:1.2)", None, None),
    ("trunc_prompt2", "a (cat:1.5) on a sofa", LONG, "(blurry)", LONG, None),
    ("trunc_break_skip1", BREAK_PROMPT + ", " + LONG, "a plain prompt_2", None, None, 1),
]


def load_parser(path: str):
    spec = importlib.util.spec_from_file_location("a1111_prompt_parser", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.parse_prompt_attention


def attention_cases(parse) -> list:
    cases = []
    for prompt in PARSER_PROMPTS:
        try:
            # Weights as Python's shortest round-trip repr: a JSON number would be read back
            # by parsers that are not correctly rounded (serde_json's default is off by an ulp).
            segments = [[text, repr(float(weight))] for text, weight in parse(prompt)]
            cases.append({"prompt": prompt, "segments": segments})
        except ValueError as e:
            cases.append({"prompt": prompt, "error": type(e).__name__ + ": " + str(e)})
    return cases


def weighted_windows(parse, tok: CLIPTokenizer, prompt: str, dropped: list | None = None):
    """A1111's tokenize_line with its default options (no textual inversion), capped at 3 windows
    (the count of prompt tokens beyond them is appended to `dropped`)."""
    parsed = parse(prompt)
    comma = tok.get_vocab()[",</w>"]
    chunks: list[tuple[list[int], list[float]]] = []
    tokens: list[int] = []
    weights: list[float] = []
    last_comma = -1

    def close():
        nonlocal tokens, weights, last_comma
        chunks.append((tokens, weights))
        tokens, weights, last_comma = [], [], -1

    for text, weight in parsed:
        if text == "BREAK" and weight == -1:
            close()
            continue
        for token in tok(text, add_special_tokens=False).input_ids:
            if token == comma:
                last_comma = len(tokens)
            elif len(tokens) == CHUNK and last_comma != -1 and len(tokens) - last_comma <= BACKTRACK:
                cut = last_comma + 1
                moved = (tokens[cut:], weights[cut:])
                tokens, weights = tokens[:cut], weights[:cut]
                close()
                tokens, weights = moved
            if len(tokens) == CHUNK:
                close()
            tokens.append(token)
            weights.append(float(weight))
    if tokens or not chunks:
        close()
    if dropped is not None:
        dropped.append(sum(len(t) for t, _ in chunks[MAX_WINDOWS:]))
    ids, mults = [], []
    for t, w in chunks[:MAX_WINDOWS]:
        pad = CHUNK - len(t)
        ids.append([tok.bos_token_id] + t + [tok.eos_token_id] + [tok.pad_token_id] * pad)
        mults.append([1.0] + w + [1.0] + [1.0] * pad)
    return ids, mults


def truncated_window(parse, tok: CLIPTokenizer, prompt: str):
    """diffusers' single window (the first 75 prompt tokens, the rest dropped) with A1111's
    per-token weights; `BREAK` is ordinary text of weight 1, as diffusers reads it."""
    tokens: list[int] = []
    weights: list[float] = []
    for text, weight in parse(prompt):
        if text == "BREAK" and weight == -1:
            weight = 1.0
        for token in tok(text, add_special_tokens=False).input_ids:
            tokens.append(token)
            weights.append(float(weight))
    tokens, weights = tokens[:CHUNK], weights[:CHUNK]
    pad = CHUNK - len(tokens)
    ids = [tok.bos_token_id] + tokens + [tok.eos_token_id] + [tok.pad_token_id] * pad
    return [ids], [[1.0] + weights + [1.0] + [1.0] * pad]


def window_prompts(sd15: CLIPTokenizer) -> list[str]:
    """Prompts for windows.json: the parser prompts A1111 accepts, BREAK at the edges, weights
    across window cuts and comma moves, more than 3 windows."""
    prompts = [c for c in PARSER_PROMPTS if c not in ("(a:1.2.3)", "(a:.)")]
    n = lambda k: prompt_of_length(sd15, k, NO_COMMA_FILLER)  # noqa: E731
    prompts += [
        "BREAK a", "a BREAK", "BREAK BREAK", "a BREAK BREAK b", "a, BREAK b",
        LONG, BREAK_PROMPT, f"{LONG} BREAK {LONG}",
        f"{n(75)} BREAK b",  # a full window, then BREAK: no empty window between
        f"{n(74)} (b c d:1.3)",  # a weighted phrase cut by the window edge
        f"{n(70)}, (weighted words after the comma:1.4) and more",  # moved with their weights
        f"{n(50)}, [{n(40)}]",  # comma too far back: cut at 75 inside the weighted run
        "a BREAK b BREAK c BREAK d BREAK e",  # 5 windows: 2 dropped
        f"({n(200)}:0.9), [{n(60)}]",  # past 225 tokens: dropped inside a weighted run
    ]
    return prompts


def windows_cases(parse, toks: dict) -> list:
    cases = []
    for prompt in window_prompts(toks["sd15"]):
        case: dict = {"prompt": prompt}
        for key, tok in toks.items():
            dropped: list = []
            ids, weights = weighted_windows(parse, tok, prompt, dropped)
            # Weights as float32 (what the encoders are scaled by), stored sparsely: the
            # positions whose weight is not 1, as [window, position, repr].
            as_f32 = torch.tensor(weights, dtype=torch.float32).tolist()
            case[f"windows_{key}"] = ids
            case[f"weights_{key}"] = [[w, i, repr(x)] for w, row in enumerate(as_f32)
                                      for i, x in enumerate(row) if x != 1.0]
            case[f"dropped_{key}"] = dropped[0]
        cases.append(case)
    return cases


def pick_sd15(clip_skip):
    def pick(encoder, out):
        if clip_skip is None:
            return out.last_hidden_state
        return encoder.final_layer_norm(out.hidden_states[-(clip_skip + 1)])
    return pick


def pick_sdxl(clip_skip):
    def pick(encoder, out):
        return out.hidden_states[-((clip_skip or 0) + 2)]
    return pick


@torch.no_grad()
def encode(encoder, ids, weights, pick):
    """Windows through `encoder`, A1111's "Original" emphasis per window: [1, 77 k, C], pooled."""
    out = encoder(torch.tensor(ids), output_hidden_states=True)
    z = pick(encoder, out)  # [k, 77, C]
    w = torch.tensor(weights, dtype=torch.float32)  # [k, 77]
    windows = []
    for i in range(z.shape[0]):
        zi = z[i]
        before = zi.mean()
        zi = zi * w[i][:, None]
        zi = zi * (before / zi.mean())
        windows.append(zi)
    k, l, c = z.shape
    hidden = torch.cat(windows, dim=0).reshape(1, k * l, c)
    pooled = out.text_embeds[:1] if hasattr(out, "text_embeds") else None
    return hidden, pooled


def pad(ids, weights, tok, count):
    empty = [tok.bos_token_id, tok.eos_token_id] + [tok.pad_token_id] * CHUNK
    extra = count - len(ids)
    return ids + [empty] * extra, weights + [[1.0] * (CHUNK + 2)] * extra


def build(parse, model: str, cases_spec, truncated_spec=()) -> tuple[dict, list]:
    sdxl = model == "sdxl"
    toks = [CLIPTokenizer.from_pretrained(str(TINY / model / "tokenizer"))]
    encs = [CLIPTextModel.from_pretrained(str(TINY / model / "text_encoder"), torch_dtype=torch.float32)]
    if sdxl:
        toks.append(CLIPTokenizer.from_pretrained(str(TINY / model / "tokenizer_2")))
        encs.append(CLIPTextModelWithProjection.from_pretrained(str(TINY / model / "text_encoder_2"),
                                                                torch_dtype=torch.float32))
    for e in encs:
        e.eval()
    pick = pick_sdxl if sdxl else pick_sd15
    tensors: dict = {}
    cases: list = []
    specs = [(spec, False) for spec in cases_spec] + [(spec, True) for spec in truncated_spec]
    for (name, prompt, prompt_2, negative, negative_2, clip_skip), truncated in specs:
        split = truncated_window if truncated else weighted_windows
        texts = [prompt, prompt_2 or prompt][: len(toks)]
        pos = [split(parse, t, p) for t, p in zip(toks, texts)]
        neg = None
        if negative is not None or not sdxl:
            ntexts = [negative or "", negative_2 or negative or ""][: len(toks)]
            neg = [split(parse, t, p) for t, p in zip(toks, ntexts)]
        count = max(len(ids) for ids, _ in pos + (neg or []))
        pos = [pad(ids, w, t, count) for (ids, w), t in zip(pos, toks)]
        outs = [encode(e, ids, w, pick(clip_skip)) for e, (ids, w) in zip(encs, pos)]
        tensors[f"{name}.ids"] = torch.tensor([ids for ids, _ in pos], dtype=torch.int32)
        tensors[f"{name}.weights"] = torch.tensor([w for _, w in pos], dtype=torch.float32)
        tensors[f"{name}.positive"] = torch.cat([h for h, _ in outs], dim=-1)
        if sdxl:
            tensors[f"{name}.pooled"] = outs[1][1]
        if neg is not None:
            neg = [pad(ids, w, t, count) for (ids, w), t in zip(neg, toks)]
            nouts = [encode(e, ids, w, pick(None)) for e, (ids, w) in zip(encs, neg)]  # diffusers: no clip_skip for negatives
            tensors[f"{name}.negative"] = torch.cat([h for h, _ in nouts], dim=-1)
            if sdxl:
                tensors[f"{name}.negative_pooled"] = nouts[1][1]
        weighted = any(x != 1.0 for _, w in pos for row in w for x in row)
        assert weighted, name
        print(f"  {model} {name}: {count} windows")
        case = {"name": name, "prompt": prompt, "prompt_2": prompt_2, "negative": negative,
                "negative_2": negative_2, "clip_skip": clip_skip, "windows": count}
        if truncated:
            lengths = [sum(len(t(x, add_special_tokens=False).input_ids) for x, _ in parse(p))
                       for t, p in zip(toks, texts)]
            assert max(lengths) > CHUNK, (name, lengths)  # something is dropped
            case["truncated"] = True
        cases.append(case)
    return tensors, cases


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    parse = load_parser(sys.argv[1])
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)

    cases = attention_cases(parse)
    assert len(cases) >= 40 and sum("error" in c for c in cases) >= 2
    path = OUT / "attention.json"
    source = "AUTOMATIC1111/stable-diffusion-webui modules/prompt_parser.py parse_prompt_attention"
    lines = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in cases)
    path.write_text(f'{{"source": {json.dumps(source)},\n "cases": [\n  {lines}\n ]}}\n', encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}: {len(cases)} prompts")

    toks = {"sd15": CLIPTokenizer.from_pretrained(str(TINY / "sd15" / "tokenizer")),
            "sdxl2": CLIPTokenizer.from_pretrained(str(TINY / "sdxl" / "tokenizer_2"))}
    cases = windows_cases(parse, toks)
    assert sum(len(c["windows_sd15"]) > 1 for c in cases) >= 8 and any(c["dropped_sd15"] for c in cases)
    path = OUT / "windows.json"
    lines = ",\n  ".join(json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in cases)
    path.write_text(f'{{"cases": [\n  {lines}\n]}}\n', encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}: {len(cases)} prompts, {path.stat().st_size} bytes")

    for model, spec, truncated in [("sd15", SD15_CASES, ()), ("sdxl", SDXL_CASES, SDXL_TRUNCATED_CASES)]:
        tensors, model_cases = build(parse, model, spec, truncated)
        assert any(c["windows"] > 1 for c in model_cases)
        tensors = {k: v.detach().contiguous() for k, v in sorted(tensors.items())}
        path = OUT / f"weighted_{model}.safetensors"
        safetensors.torch.save_file(tensors, str(path),
                                    metadata={"cases": json.dumps(model_cases, ensure_ascii=False)})
        print(f"wrote {path.relative_to(ROOT)}: {len(model_cases)} cases, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

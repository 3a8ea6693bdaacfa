"""CLIP tokenizer parity fixture -> fixtures/parity/tokenizer.json.

What it makes: for ~40 prompts (punctuation, accents and other scripts, emoji, runs of spaces,
tabs and newlines, numbers, A1111 weight syntax, special-token text, the empty prompt, and
prompts of exactly 75/76/77/150/300/500 BPE tokens), the token ids transformers'
`CLIPTokenizer` gives with the tiny pipelines' tokenizers (`fixtures/tiny/sd15/tokenizer`, pad
<|endoftext|>; `fixtures/tiny/sdxl/tokenizer_2`, pad "!"):
  * `ids_sd15`, `ids_sdxl2`: no truncation, no padding (BOS ... EOS). They differ where the
    prompt holds "!": tokenizer_2's pad token "!" is a special added token, so each "!" becomes
    token 0 on its own, as in diffusers. SDXL's first tokenizer equals SD 1.5's (checked);
  * `padded_sd15`, `padded_sdxl2`: `padding="max_length", max_length=77, truncation=True`, as
    diffusers' `encode_prompt` calls it;
  * `windows_*`, `dropped_*`: the long-prompt windows of a reference chunker
    written here after AUTOMATIC1111's `tokenize_line` (75 prompt tokens per window, a window
    ending within 20 tokens after a comma moves the words after that comma to the next one;
    every window is BOS + its tokens + EOS, then the tokenizer's pad token up to 77, i.e. the
    layout diffusers gives a short prompt); at most 3 windows, the tokens of later windows are
    dropped and counted in `dropped`.
The BPE itself always comes from transformers (`add_special_tokens=False`); only the chunking is
ours. No ftfy is installed, so the tokenizer normalises with NFC + whitespace collapsing +
lower-casing, exactly as transformers does without it.

Run:   /work/venv/bin/python tools/make_tokenizer_fixtures.py   (~3 s; byte-identical reruns)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from transformers import CLIPTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "parity" / "tokenizer.json"

CHUNK = 75  # prompt tokens per window
BACKTRACK = 20  # A1111's default `comma_padding_backtrack`
MAX_WINDOWS = 3  # 3 x 75 = 225 prompt tokens (OctoAI accepts 231 tokens on SD 1.5)
WINDOW = CHUNK + 2

SHORT_PROMPTS = [
    "a photo of a cat",
    "A Photo Of A CAT",
    "",
    " ",
    "   leading and trailing spaces   ",
    "multiple    spaces\tand\ttabs\nand\n\nnewlines\r\nhere",
    "Hello, world! How's it going? I'm fine; you're great -- we'll see.",
    "don't can't won't it'd they've",
    "(cat:1.2), [dog], {bird}, ((masterpiece)), (worst quality:1.4)",
    "a <lora:detail:0.8> portrait, BREAK, second part",
    "numbers 1234567890 and 3.14159 and 1,000,000 and 2nd 21st",
    "café résumé naïve façade über straße",
    "Ångström ÉCOLE ÇA",
    "e\u0301cole (decomposed accent, NFC makes it one character)",
    "日本語のプロンプト、猫の写真",
    "中文提示词：一只猫",
    "한국어 고양이 사진",
    "Привет мир, кошка",
    "مرحبا بالعالم",
    "emoji 🐱🐶 and 👩‍🚀 astronaut 🇫🇷 flag",
    "symbols @#$%^&*_+=|\\/<>~`",
    "quotes \"double\" 'single' «guillemets» “curly” ‘curly’",
    "url https://example.com/path?query=1&x=y",
    "snake_case and camelCase and kebab-case",
    "ALLCAPS SHOUTING!!!",
    "a very very very very very very long word: supercalifragilisticexpialidocious",
    "<|startoftext|> and <|endoftext|> as text",
    "mixed 4k uhd, 8k, hdr, f/1.8, 35mm, iso-100",
    "trailing comma,",
    ",,,, only commas ,,,,",
    "non\u00a0breaking\u2003em space\u3000ideographic",
    "x<|ENDOFTEXT|>y and <|StartOfText|>",
    "wow?! a!!b, hello!",
]

FILLER = (
    "masterpiece, best quality, a detailed portrait of an old sailor with a grey beard, "
    "wearing a wool cap, standing on the deck of a wooden ship at sunset, dramatic lighting, "
    "cinematic composition, sharp focus, intricate details, oil painting by a famous artist, "
    "warm colors, soft shadows, volumetric fog, trending on artstation, highly detailed face, "
    "weathered skin, piercing blue eyes, rope and sails in the background, seagulls flying "
    "overhead, calm sea, golden hour, photorealistic, 85mm lens, bokeh, film grain"
).split(" ")

NO_COMMA_FILLER = [w.rstrip(",") for w in FILLER]


def load(name: str) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(ROOT / "fixtures" / "tiny" / name))


def bpe(tok: CLIPTokenizer, text: str) -> list[int]:
    return tok(text, add_special_tokens=False).input_ids


def prompt_of_length(tok: CLIPTokenizer, n: int, words: list[str]) -> str:
    """The shortest prefix of the repeated word list with exactly `n` BPE tokens (words are
    appended one at a time; a word that would overshoot is replaced by short ones)."""
    out: list[str] = []
    i = 0
    while len(bpe(tok, " ".join(out))) < n:
        word = words[i % len(words)]
        i += 1
        if len(bpe(tok, " ".join(out + [word]))) > n:
            word = "a"
        out.append(word)
    text = " ".join(out)
    assert len(bpe(tok, text)) == n, (n, len(bpe(tok, text)))
    return text


def chunk_windows(tokens: list[int], comma: int, bos: int, eos: int, pad: int) -> tuple[list[list[int]], int]:
    """Reference A1111-style chunker: windows of BOS + <= 75 tokens + EOS + pad, and the number of
    prompt tokens dropped beyond MAX_WINDOWS."""
    chunks: list[list[int]] = []
    current: list[int] = []
    last_comma = -1
    for token in tokens:
        if token == comma:
            last_comma = len(current)
        elif (
            len(current) == CHUNK
            and last_comma != -1
            and len(current) - last_comma <= BACKTRACK
        ):
            moved = current[last_comma + 1:]
            chunks.append(current[: last_comma + 1])
            current = moved
            last_comma = -1
        if len(current) == CHUNK:
            chunks.append(current)
            current = []
            last_comma = -1
        current.append(token)
    if current or not chunks:
        chunks.append(current)
    kept = chunks[:MAX_WINDOWS]
    dropped = sum(len(c) for c in chunks[MAX_WINDOWS:])
    windows = []
    for c in kept:
        w = [bos] + c + [eos]
        w += [pad] * (WINDOW - len(w))
        assert len(w) == WINDOW
        windows.append(w)
    return windows, dropped


def main() -> None:
    sd15 = load("sd15/tokenizer")
    sdxl1 = load("sdxl/tokenizer")
    sdxl2 = load("sdxl/tokenizer_2")
    assert sd15.pad_token_id == 49407 and sdxl1.pad_token_id == 49407, "CLIP-L pads with <|endoftext|>"
    assert sdxl2.pad_token_id == 0, "OpenCLIP-G's tokenizer_2 pads with '!' = 0"
    bos, eos = sd15.bos_token_id, sd15.eos_token_id
    assert (bos, eos) == (49406, 49407)
    comma = sd15.get_vocab()[",</w>"]

    prompts = list(SHORT_PROMPTS)
    for n, words in [(20, FILLER), (75, FILLER), (76, FILLER), (77, FILLER), (75, NO_COMMA_FILLER),
                     (76, NO_COMMA_FILLER), (150, FILLER), (150, NO_COMMA_FILLER), (225, NO_COMMA_FILLER),
                     (300, FILLER), (500, FILLER)]:
        prompts.append(prompt_of_length(sd15, n, words))
    # A comma 5 tokens before the window end moves the 4 words after it into the next window; one
    # 25 tokens before is too far back (backtrack 20) and the window is cut at 75.
    for before, after in [(70, 30), (50, 60), (74, 10), (60, 100)]:
        prompts.append(prompt_of_length(sd15, before, NO_COMMA_FILLER) + ", " + prompt_of_length(sd15, after, NO_COMMA_FILLER))

    cases = []
    for text in prompts:
        case: dict = {"text": text}
        for key, tok, twin in [("sd15", sd15, sdxl1), ("sdxl2", sdxl2, None)]:
            ids = tok(text).input_ids
            padded = tok(text, padding="max_length", max_length=WINDOW, truncation=True).input_ids
            assert len(padded) == WINDOW
            if twin is not None:  # SDXL's first tokenizer is SD 1.5's
                assert twin(text).input_ids == ids
                assert twin(text, padding="max_length", max_length=WINDOW, truncation=True).input_ids == padded
            body = tok(text, add_special_tokens=False).input_ids
            assert ids == [bos] + body + [eos]
            windows, dropped = chunk_windows(body, comma, bos, eos, tok.pad_token_id)
            if len(body) <= CHUNK:
                # One window: exactly what diffusers feeds the encoder.
                assert windows == [padded], text
            case.update({f"ids_{key}": ids, f"padded_{key}": padded, f"windows_{key}": windows,
                         f"dropped_{key}": dropped})
        cases.append(case)

    doc = {
        "about": "transformers CLIPTokenizer ids and A1111-style windows; made by tools/make_tokenizer_fixtures.py",
        "chunk_tokens": CHUNK,
        "comma_backtrack": BACKTRACK,
        "max_windows": MAX_WINDOWS,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, ensure_ascii=False, indent=None, separators=(",", ":"))
    # One case per line keeps diffs readable.
    text = text.replace('{"text":', '\n{"text":')
    OUT.write_text(text + "\n", encoding="utf-8")
    lens = [len(c["ids_sd15"]) - 2 for c in cases]
    print(f"wrote {OUT.relative_to(ROOT)}: {len(cases)} prompts, {OUT.stat().st_size} bytes; "
          f"token counts {sorted(set(lens))}; windows {[len(c['windows_sd15']) for c in cases if len(c['windows_sd15']) > 1]}")


if __name__ == "__main__":
    main()

"""Make the HTML-escaping fixture of kiln's contact sheet (`kiln render --contact-sheet`).

Writes `fixtures/contact/escape.json`: a list of `{"text", "escaped"}` pairs, where `escaped` is
Python's `html.escape(text, quote=True)` (`&`, `<`, `>`, `"` and `'` replaced; `'` as `&#x27;`).
kiln escapes every string that comes from a request (ids, prompts, error messages) the same way
before writing it into `index.html`, so the page shows user text as text and never runs it.

The texts: hand-picked hostile prompts and ids (markup, script, attribute breakers, already
escaped entities, non-ASCII, control characters) and 24 seeded random strings over an alphabet
rich in the five special characters. The first two entries are the prompt and the id the
end-to-end test (`cli/tests/contact_sheet.rs`) renders with.

Deterministic: rerunning gives identical bytes. Standard library only.
Run: /work/venv/bin/python tools/make_contact_fixtures.py (~0 s).
"""

import html
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "fixtures" / "contact"

HAND_PICKED = [
    # The end-to-end test's prompt and id.
    "a <b>bold</b> \"boat\" & 'sea' </figcaption><script>document.title='pwned'</script>",
    "id-<img src=x onerror=alert(1)>&'\"",
    "",
    "plain text",
    "&amp; already escaped &lt;",
    "<!-- comment --> <![CDATA[ x ]]>",
    "\" onmouseover=\"alert(1)\" x=\"",
    "' onfocus='alert(1)' autofocus '",
    "</style><style>body{display:none}</style>",
    "javascript:alert(1)",
    "line one\nline two\ttab\r\n",
    "caf\u00e9 \u00fcber na\u00efve \u6f22\u5b57 \U0001f600 \u202eRTL",
    "(watercolour:1.2), [sketch], \\(escaped\\) BREAK <lora:x:1>",
    "a & b && c &&& d",
    "<<<>>>\"\"''",
]

ALPHABET = "<>&\"'abc xyz\u00e9\u6f22\U0001f600\n\t/=;#"


def main():
    rng = random.Random(20261203)
    texts = list(HAND_PICKED)
    for _ in range(24):
        length = rng.randint(1, 40)
        texts.append("".join(rng.choice(ALPHABET) for _ in range(length)))
    cases = [{"text": t, "escaped": html.escape(t, quote=True)} for t in texts]
    # The reference itself, checked: nothing that opens markup or ends an attribute survives.
    for case in cases:
        for ch in "<>\"'":
            assert ch not in case["escaped"], case
        assert html.unescape(case["escaped"]) == case["text"], case
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "escape.json"
    path.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {path} ({len(cases)} cases)")


if __name__ == "__main__":
    main()

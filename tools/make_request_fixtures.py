"""Make kiln's request-validation fixtures from OctoAI's OpenAPI spec.

Writes, under fixtures/request/:

- `schema.json`: what the spec says about `ImageGenerationRequest`, read from it, not typed:
  every property's JSON type, nullability, default and limits (minimum, maximum,
  exclusiveMinimum, maxLength), the required fields, the `SDXLStyles`, `Scheduler` and
  `ImageEncoding` enums, and the supported (width, height) pairs per model family, parsed from the
  `width` description ("Supported resolutions (w,h): FLUX=[...], SDXL=[...], SD1.5=[...]").
- `pydantic_errors.json`: a list of bad (and a few good) request bodies, each with the errors
  pydantic v2 reports for it, with `loc` prefixed by "body" as FastAPI does. The pydantic model
  is built here from the spec's JSON schema (types, defaults, limits, enums, unions) and
  validated in Python (lax) mode on the parsed JSON, as FastAPI validates a request body. It
  forbids unknown fields (`extra="forbid"`, the spec's `additionalProperties: false`); their
  `extra_forbidden` errors keep pydantic's `input` (the value sent), the other errors do not.
  kiln's own fields (KILN_FIELDS) are taken out of a body before it is validated, as kiln
  accepts them beside the schema's. It cannot know the rules OctoAI states only in prose (seed
  ranges, sizes per family), which kiln tests separately. A case whose body has a string `id`
  records it as `id`: the key of the line's record, which numbers too wide for serde_json
  (`1e400`, a 400-digit integer) must not lose.

Deterministic: rerunning gives identical bytes. Needs pydantic 2 (in tools/requirements.txt's
environment). Run: /work/venv/bin/python tools/make_request_fixtures.py (~1 s).
"""

import enum
import json
import re
from pathlib import Path
from typing import Annotated, Dict, List, Optional, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "shared" / "spec" / "octoai-imagegen-openapi.json"
OUT = ROOT / "fixtures" / "request"

# kiln's own request fields (pipeline/src/request/unknown.rs, KILN_FIELDS): not OctoAI's, accepted.
KILN_FIELDS = ("id",)

LIMIT_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "maxLength", "minLength")


def load_spec():
    path = SPEC if SPEC.exists() else Path("/work/shared/spec/octoai-imagegen-openapi.json")
    return json.loads(path.read_text())


def ref_name(node):
    return node["$ref"].rsplit("/", 1)[-1]


def describe(node):
    """JSON type, nullability and limits of one property, flattening anyOf/allOf."""
    out = {"types": [], "nullable": False, "limits": {}, "enum": None}
    alternatives = node.get("anyOf") or node.get("allOf") or [node]
    for alt in alternatives:
        if "$ref" in alt:
            out["types"].append("enum")
            out["enum"] = ref_name(alt)
        elif alt.get("type") == "null":
            out["nullable"] = True
        else:
            out["types"].append(alt["type"])
            for key in LIMIT_KEYS:
                if key in alt:
                    out["limits"][key] = alt[key]
            if alt["type"] == "array":
                out["items"] = describe(alt["items"])
            if alt["type"] == "object" and "additionalProperties" in alt:
                out["values"] = describe(alt["additionalProperties"])
    if "default" in node:
        out["default"] = node["default"]
    return out


def supported_sizes(description):
    """{"SDXL": [[w, h], ...], ...} from the width description."""
    sizes = {}
    for family, body in re.findall(r"([A-Z0-9.]+)=\[([^\]]*)\]", description):
        sizes[family] = [[int(w), int(h)] for w, h in re.findall(r"\((\d+), (\d+)\)", body)]
    return sizes


def make_enum(name, values):
    return enum.Enum(name, [(v, v) for v in values], type=str)


def annotation(node, enums):
    """A pydantic annotation for one JSON schema node of the spec."""
    alternatives = node.get("anyOf") or node.get("allOf") or [node]
    members = []
    nullable = False
    for alt in alternatives:
        if "$ref" in alt:
            members.append(enums[ref_name(alt)])
        elif alt.get("type") == "null":
            nullable = True
        else:
            members.append(scalar(alt, enums))
    ann = members[0] if len(members) == 1 else Union[tuple(members)]
    return Optional[ann] if nullable else ann


def scalar(node, enums):
    kind = node["type"]
    constraints = {}
    for key, arg in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"),
                     ("exclusiveMaximum", "lt"), ("maxLength", "max_length"), ("minLength", "min_length")):
        if key in node:
            constraints[arg] = node[key]
    base = {"string": str, "integer": int, "number": float, "boolean": bool}.get(kind)
    if kind == "array":
        base = List[annotation(node["items"], enums)]
    elif kind == "object":
        base = Dict[str, annotation(node["additionalProperties"], enums)]
    return Annotated[base, Field(**constraints)] if constraints else base


def build_model(schemas):
    enums = {name: make_enum(name, schemas[name]["enum"]) for name in ("SDXLStyles", "Scheduler", "ImageEncoding")}
    req = schemas["ImageGenerationRequest"]
    fields = {}
    for name, node in req["properties"].items():
        default = ... if name in req.get("required", []) else node.get("default", None)
        fields[name] = (annotation(node, enums), default)
    return create_model(
        "ImageGenerationRequest", __config__=ConfigDict(extra="forbid"), **fields
    )


BIG = "1" + "0" * 399  # a 400-digit integer, beyond f64's range
WIDE_NUMBER_CASES = [
    f'{{"id": "wide-{i}", "prompt": "a fox", {fields}}}'
    for i, fields in enumerate([
        '"cfg_scale": 1e400',
        '"cfg_scale": -1e400',
        f'"cfg_scale": {BIG}',
        '"cfg_scale": 10000000000000000000000000',
        '"steps": 1e400',
        '"steps": -1.5E+400',
        f'"steps": {BIG}',
        f'"steps": -{BIG}',
        '"steps": 10000000000000000000000000',
        '"steps": -9999999999999999999',
        '"num_images": 1e400',
        f'"clip_skip": {BIG}',
        '"strength": 1e400',
        '"width": 1e400',
        f'"outpainting": {BIG}',
        '"outpainting": 1e400',
        '"sampler": 1e400',
        '"negative_prompt": 1e400',
        '"seed": 1e400',
        '"seed": [1, 1e400]',
        '"loras": {"ink": 1e400}',
        f'"loras": {{"ink": {BIG}}}',
        '"transfer_images": {"w": ["a", 1e400]}',
        '"controlnet_conditioning_scale": 1e400',
        '"steps": 1e400, "steps": 20',
        '"steps": 1e400, "cfg_scale": 1e400, "strength": -1e400',
        '"negative_prompt": "12345678901234567890123"',
    ])
]

# Bad (and some good) requests. Each is sent as the JSON text of one JSONL line.
P = {"prompt": "a red fox in the snow"}
CASES = [
    # The body itself.
    "[1, 2]",
    "5",
    "null",
    '"prompt"',
    "{}",
    {"negative_prompt": "blurry"},
    # prompt and friends.
    {"prompt": 5},
    {"prompt": None},
    {"prompt": "x" * 10000},
    {"prompt": "x" * 10001},
    {"prompt": "é" * 10001},
    {**P, "negative_prompt": "n" * 10001},
    {**P, "prompt_2": "p" * 10001},
    {**P, "negative_prompt_2": "n" * 10001},
    {**P, "negative_prompt": 3},
    {**P, "prompt_2": ["a"]},
    {**P, "negative_prompt": None, "prompt_2": None, "negative_prompt_2": None},
    # cfg_scale.
    {**P, "cfg_scale": 0},
    {**P, "cfg_scale": 0.0001},
    {**P, "cfg_scale": -1},
    {**P, "cfg_scale": 50},
    {**P, "cfg_scale": 50.0001},
    {**P, "cfg_scale": "7.5"},
    {**P, "cfg_scale": "seven"},
    {**P, "cfg_scale": None},
    {**P, "cfg_scale": True},
    {**P, "cfg_scale": [7]},
    {**P, "cfg_scale": "nan"},
    # steps.
    {**P, "steps": 0},
    {**P, "steps": 1},
    {**P, "steps": 200},
    {**P, "steps": 201},
    {**P, "steps": 20.0},
    {**P, "steps": 20.5},
    {**P, "steps": "25"},
    {**P, "steps": " 25 "},
    {**P, "steps": "25.5"},
    {**P, "steps": "many"},
    {**P, "steps": None},
    {**P, "steps": {}},
    {**P, "steps": 1e30},
    {**P, "steps": -3},
    {**P, "steps": "1_0"},
    {**P, "steps": "-5.00"},
    {**P, "steps": "1__0"},
    {**P, "steps": "1e3"},
    {**P, "steps": True},
    # num_images.
    {**P, "num_images": 0},
    {**P, "num_images": 1},
    {**P, "num_images": 16},
    {**P, "num_images": 17},
    {**P, "num_images": "2"},
    {**P, "num_images": False},
    # strength.
    {**P, "strength": 0},
    {**P, "strength": 1},
    {**P, "strength": 1.0001},
    {**P, "strength": 1e-9},
    {**P, "strength": "inf"},
    {**P, "strength": " 0.5 "},
    # clip_skip.
    {**P, "clip_skip": 0},
    {**P, "clip_skip": 1},
    {**P, "clip_skip": 12},
    {**P, "clip_skip": 13},
    {**P, "clip_skip": None},
    {**P, "clip_skip": 2.5},
    {**P, "clip_skip": "two"},
    # Enums.
    {**P, "sampler": "K_EULER"},
    {**P, "sampler": "k_euler"},
    {**P, "sampler": "EULER"},
    {**P, "sampler": None},
    {**P, "sampler": 3},
    {**P, "image_encoding": "png"},
    {**P, "image_encoding": "PNG"},
    {**P, "image_encoding": "webp"},
    {**P, "style_preset": "Pokémon"},
    {**P, "style_preset": "pokemon"},
    {**P, "style_preset": "Base"},
    {**P, "style_preset": None},
    {**P, "style_preset": 7},
    # Booleans.
    {**P, "outpainting": True},
    {**P, "outpainting": "yes"},
    {**P, "outpainting": "maybe"},
    {**P, "outpainting": 2},
    {**P, "outpainting": 0},
    {**P, "outpainting": None},
    {**P, "outpainting": 1.0},
    {**P, "outpainting": 0.5},
    {**P, "outpainting": "OFF"},
    {**P, "outpainting": " yes"},
    {**P, "use_refiner": "no"},
    {**P, "log_prompt": []},
    {**P, "controlnet_preprocess": 0.5},
    # Optional strings.
    {**P, "init_image": 5},
    {**P, "mask_image": []},
    {**P, "checkpoint": 1},
    {**P, "vae": {}},
    {**P, "controlnet": False},
    {**P, "controlnet_image": 2},
    # Other numbers.
    {**P, "controlnet_conditioning_scale": -0.5},
    {**P, "controlnet_early_stop": 1.5},
    {**P, "controlnet_early_stop": -0.1},
    {**P, "high_noise_frac": 1.5},
    {**P, "high_noise_frac": -0.5},
    {**P, "high_noise_frac": "x"},
    {**P, "inpaint_full_res_padding": 3.5},
    {**P, "width": 1000.5},
    {**P, "width": "wide"},
    {**P, "height": None, "width": None},
    {**P, "height": [1024]},
    # Dictionaries.
    {**P, "loras": 5},
    {**P, "loras": {"crayon": "strong"}},
    {**P, "loras": {"crayon": 0.5, "ink": "x"}},
    {**P, "textual_inversions": {"name": 3}},
    {**P, "textual_inversions": []},
    {**P, "transfer_images": {"word": "img"}},
    {**P, "transfer_images": {"word": ["a", 3]}},
    {**P, "transfer_images": 1},
    # seed.
    {**P, "seed": 1},
    {**P, "seed": "17"},
    {**P, "seed": 17.0},
    {**P, "seed": 17.5},
    {**P, "seed": "x"},
    {**P, "seed": {}},
    {**P, "seed": [1, None, 3]},
    {**P, "seed": [1, "x", None]},
    {**P, "seed": [1.5, 2]},
    {**P, "seed": [[1]]},
    {**P, "seed": None},
    {**P, "seed": True},
    {**P, "seed": " 12 "},
    {**P, "seed": [None, "3"]},
    # Unknown fields (the spec: additionalProperties false): typos, case, several, with null,
    # list and object values, repeated keys (the last value counts), beside kiln's own `id`.
    {**P, "negative_promt": "blurry"},
    {**P, "Prompt": "a red fox"},
    {**P, "stpes": 20, "cfg": 7, "seeds": [1, 2]},
    {"zeta": None, **P, "alpha": {"k": [1, {"deep": True}]}, "mid": []},
    {"id": "fox-1", **P, "negative_promt": "blurry"},
    {"id": "fox-2", **P},
    '{"prompt": "a fox", "colour": "red", "steps": 3, "colour": "blue"}',
    {**P, "loras": {"not_a_field": 0.5}, "lora": {"x": 1}},
    # Unknown fields with errors of known fields, and with the prompt missing.
    {"negative_promt": "blurry", "steps": 0, **P, "sampler": "nope", "widht": 512},
    {"negative_promt": "blurry", "cfg_scale": "x"},
    {"stpes": "20", "seed": [1, "x"], "num_images": 17},
    # Several errors at once, collected in one pass.
    {"steps": 0, "cfg_scale": 99, "sampler": "nope", "num_images": 17, "clip_skip": 0},
    {**P, "steps": "x", "strength": 2, "image_encoding": "gif", "outpainting": "x", "seed": "x"},
    # Numbers serde_json cannot hold as written (Python reads 1e400 as inf and keeps a long
    # integer exact): pydantic judges them per field; the line keeps its id.
    *WIDE_NUMBER_CASES,
    # Valid, with all defaults spelled out.
    {**P, "cfg_scale": 12.0, "steps": 30, "sampler": "DDIM", "num_images": 1, "strength": 0.8,
     "image_encoding": "jpeg", "outpainting": False, "use_refiner": True},
]


def text_of(case):
    return case if isinstance(case, str) else json.dumps(case, ensure_ascii=False)


def pydantic_errors(model, text):
    body = json.loads(text)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in KILN_FIELDS}
    try:
        model.model_validate(body)
    except ValidationError as exc:
        return [error_record(err) for err in exc.errors()]
    return []


def error_record(err):
    """FastAPI's record of one pydantic error; `input` kept for unknown fields only."""
    record = {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
    if err["type"] == "extra_forbidden":
        record["input"] = err["input"]
    return record


def main():
    spec = load_spec()
    schemas = spec["components"]["schemas"]
    req = schemas["ImageGenerationRequest"]
    properties = {name: describe(node) for name, node in req["properties"].items()}
    schema = {
        "source": "shared/spec/octoai-imagegen-openapi.json",
        "field_order": list(req["properties"]),
        "required": req.get("required", []),
        "properties": properties,
        "styles": schemas["SDXLStyles"]["enum"],
        "samplers": schemas["Scheduler"]["enum"],
        "image_encodings": schemas["ImageEncoding"]["enum"],
        "sizes": supported_sizes(req["properties"]["width"]["description"]),
    }
    assert schema["sizes"] == supported_sizes(req["properties"]["height"]["description"])
    assert len(schema["styles"]) == 78 and len(schema["samplers"]) == 21, "spec changed"
    assert {"SDXL", "SD1.5"} <= set(schema["sizes"]), "size lists missing from the description"

    model = build_model(schemas)
    cases = []
    for case in CASES:
        text = text_of(case)
        case = {"line": text, "errors": pydantic_errors(model, text)}
        body = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            case["id"] = body["id"]  # the id kiln keys the line's record by
        cases.append(case)
    assert sum(1 for c in cases if not c["errors"]) >= 10, "too few valid cases: model too strict?"

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "schema.json").write_text(json.dumps(schema, indent=1, ensure_ascii=False) + "\n")
    errors = {"pydantic_version": pydantic.VERSION, "cases": cases}
    (OUT / "pydantic_errors.json").write_text(json.dumps(errors, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases, {sum(len(c['errors']) for c in cases)} errors")


if __name__ == "__main__":
    main()

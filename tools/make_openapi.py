"""Writes server/openapi.json: the OpenAPI document of what `kiln serve` implements.

It starts from OctoAI's image API document (shared/spec/octoai-imagegen-openapi.json): the request,
response and validation-error schemas are OctoAI's, so clients generated from either document
agree. What kiln changes:
  - paths: the four engines kiln serves (sdxl, sd, ssd, controlnet-sdxl; OctoAI's document has no
    `sd`, which takes the same body), plus /healthz, /readyz, /metrics and /openapi.json;
  - the request schema gains kiln's fields: `id` and `engine` (kiln's own) and the five
    IP-Adapter fields kiln reads;
  - each generate path lists the statuses kiln answers besides 200 and 422;
  - bearer authentication (`--token-file`).

Usage: python tools/make_openapi.py [../shared/spec/octoai-imagegen-openapi.json]
"""

import copy
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared/spec/octoai-imagegen-openapi.json"
ENGINES = ["sdxl", "sd", "ssd", "controlnet-sdxl"]

KILN_FIELDS = {
    "id": {
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "title": "Id",
        "description": "kiln: names the request in logs (and in `kiln render`, its response line and image files).",
    },
    "engine": {
        "type": "string",
        "enum": ENGINES,
        "title": "Engine",
        "description": "kiln: the engine the request was written for; must match the path's when sent.",
    },
    "ip_adapter": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "title": "IP-Adapter",
        "description": "kiln: an IP-Adapter in the asset library (default ip-adapter_sdxl when an image is sent).",
    },
    "ip_adapter_image": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "title": "IP-Adapter image",
        "description": "kiln: the reference image, base64.",
    },
    "ip_adapter_scale": {
        "anyOf": [{"type": "number"}, {"type": "null"}],
        "title": "IP-Adapter scale",
        "description": "kiln: the adapter's weight (default 1).",
    },
    "ip_adapter_method": {
        "anyOf": [{"type": "string", "enum": ["full", "style", "composition"]}, {"type": "null"}],
        "title": "IP-Adapter method",
        "description": "kiln: which attention layers take the image (InstantStyle's style / composition).",
    },
    "ip_adapter_mask_image": {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "title": "IP-Adapter mask",
        "description": "kiln: where the reference image applies (white), base64.",
    },
}

DETAIL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
    "title": "Detail",
}
INTERNAL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "error_id": {"type": "string"}},
    "required": ["detail", "error_id"],
    "title": "InternalError",
}
STATUSES = {
    "401": "No bearer token, or not an accepted one (when the server has --token-file).",
    "404": "An engine kiln does not serve.",
    "408": "The body did not arrive in time.",
    "413": "The body is larger than --max-body-bytes.",
    "415": "The body is not JSON.",
    "503": "The model is loading, the queue is full, or the server is shutting down (see Retry-After).",
}


def detail_response(description, schema="#/components/schemas/Detail"):
    return {"description": description, "content": {"application/json": {"schema": {"$ref": schema}}}}


def main():
    spec = json.loads(SPEC.read_text())
    template = spec["paths"]["/generate/sdxl"]["post"]
    schemas = {k: spec["components"]["schemas"][k] for k in (
        "HTTPValidationError", "ImageEncoding", "ImageGeneration", "ImageGenerationRequest",
        "ImageGenerationResponse", "SDXLStyles", "Scheduler", "ValidationError")}
    request = schemas["ImageGenerationRequest"]
    request["properties"].update(KILN_FIELDS)
    schemas["Detail"] = DETAIL
    schemas["InternalError"] = INTERNAL

    paths = {}
    for engine in ENGINES:
        op = copy.deepcopy(template)
        op["operationId"] = f"generate_images_generate_{engine.replace('-', '_')}_post"
        for status, text in STATUSES.items():
            op["responses"][status] = detail_response(text)
        op["responses"]["500"] = detail_response(
            "Rendering failed in a way no request field can fix; error_id is in the server's log.",
            "#/components/schemas/InternalError")
        paths[f"/generate/{engine}"] = {"post": op}
    text = {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    paths["/healthz"] = {"get": {"summary": "Liveness", "security": [], "responses": text}}
    paths["/readyz"] = {"get": {"summary": "Readiness: the model is loaded", "security": [], "responses": {
        **text, "503": detail_response("Loading or shutting down.")}}}
    paths["/metrics"] = {"get": {"summary": "Prometheus metrics", "security": [], "responses": text}}
    paths["/openapi.json"] = {"get": {"summary": "This document", "security": [], "responses": {
        "200": {"description": "OK", "content": {"application/json": {}}}}}}

    out = {
        "openapi": spec["openapi"],
        "info": {"title": "kiln", "version": "0.1",
                 "description": "OctoAI's image generation API as kiln serves it (kiln serve)."},
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
    target = ROOT / "server/openapi.json"
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

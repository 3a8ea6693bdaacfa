"""OctoAI client code pointed at kiln serve: the same `requests` call OctoAI's image API docs make,
with only the base URL changed.

    kiln serve --listen 127.0.0.1:8080 &
    python examples/octoai_client.py                       # http://127.0.0.1:8080/generate/sdxl
    python examples/octoai_client.py URL --out DIR --token TOKEN

The token goes in `Authorization: Bearer ...` as OctoAI's does (kiln checks it when started with
--token-file; OCTOAI_TOKEN is read when --token is not given). Each image is saved as
DIR/result{i}.{png|jpg}; the script exits non-zero on any HTTP error.
"""

import argparse
import base64
import os
import sys
import time

import requests


def generate(endpoint_url, token, out_dir):
    inputs = {
        "prompt": "a cabin by a frozen lake under the northern lights, oil painting",
        "negative_prompt": "blurry, low quality",
        "sampler": "DDIM",
        "cfg_scale": 7.5,
        "num_images": 2,
        "seed": 1234,
        "width": 1024,
        "height": 1024,
        "steps": 4,
        "use_refiner": False,
        "image_encoding": "png",
    }
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    started = time.time()
    response = requests.post(endpoint_url, json=inputs, headers=headers, timeout=600)
    if response.status_code != 200:
        print(f"{response.status_code}: {response.text}", file=sys.stderr)
        response.raise_for_status()
    body = response.json()
    os.makedirs(out_dir, exist_ok=True)
    for i, image in enumerate(body["images"]):
        data = base64.b64decode(image["image_b64"])
        extension = "png" if data.startswith(b"\x89PNG") else "jpg"
        path = os.path.join(out_dir, f"result{i}.{extension}")
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: seed {image['seed']}")
    print(f"{len(body['images'])} images, prediction_time_ms {body['prediction_time_ms']:.0f}, "
          f"round trip {time.time() - started:.2f} s")
    return body


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080/generate/sdxl")
    parser.add_argument("--out", default="octoai_client_out")
    parser.add_argument("--token", default=os.environ.get("OCTOAI_TOKEN"))
    args = parser.parse_args()
    body = generate(args.url, args.token, args.out)
    if len(body["images"]) != 2:
        sys.exit(f"expected 2 images, got {len(body['images'])}")


if __name__ == "__main__":
    main()
